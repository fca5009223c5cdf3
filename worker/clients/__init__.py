"""HTTP clients for WispHub and the BQN. No Redis and no metrics here: each request's
outcome and time go to a hook the caller passes."""
