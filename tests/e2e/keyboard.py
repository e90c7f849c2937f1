"""Moving the focus as a keyboard user does, for the browser tests."""


def press_until_focused(page, locator, *, key="Tab", limit=60):
    """Press ``key`` until ``locator`` has the focus; fail if it never does."""
    for _ in range(limit):
        if locator.evaluate("el => el === document.activeElement"):
            return
        page.keyboard.press(key)
    raise AssertionError(f"{key} never reached {locator}")
