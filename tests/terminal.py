"""What a terminal shows for some output, for tests of lines rewritten in place."""


def screen(text: str) -> list[str]:
    """The lines a terminal shows for `text`: a carriage return goes back to the start of the
    line and what follows overwrites it; trailing blanks cut."""
    lines: list[str] = []
    current: list[str] = []
    column = 0
    for char in text:
        if char == "\n":
            lines.append("".join(current).rstrip())
            current, column = [], 0
        elif char == "\r":
            column = 0
        else:
            current[column : column + 1] = [char]
            column += 1
    return [*lines, "".join(current).rstrip()]
