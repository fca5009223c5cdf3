"""Simulators of the WispHub and Bequant BQN APIs for tests and the demo."""
