#!/usr/bin/env python3
"""Take the README's pictures of the deletion flow from a running demo.

    PORT=8765 make run        # in another terminal: the demo, with its worker
    .venv/bin/python scripts/screenshots.py --url http://127.0.0.1:8765 \\
        --username editor --password demo [--segment "Churn risk in France or Spain"]

It logs in as an Editor, opens the segment, its builder (••• → Edit), the
••• menu, the deletion dialog (name typed), confirms, and shoots the
progress and the end into docs/flow-*.png, at 1280x800. It really deletes
the segment's profiles in that demo database: on a demo where that is done
already, pass another segment with --segment (or start from a fresh demo).

Every step waits for a state the page shows (a role, a label, a text), never
for a fixed time, and finds things the way a screen reader would (roles and
accessible names), so restyling the pages does not break it. Chromium is
Debian's /usr/bin/chromium with the test suite's arguments.
"""

import argparse
import re
import sys
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

# The same as tests/conftest.py's CHROMIUM_ARGS (not imported: that module
# needs Django and pytest).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS = Path(__file__).resolve().parent.parent / "docs"


def shoot(page, name, out):
    path = out / f"{name}.png"
    page.screenshot(path=path)
    print(f"  {path.relative_to(out.parent) if out.parent in path.parents else path}")


def center(locator):
    """Scroll so the element is in the middle of the picture."""
    locator.evaluate("element => element.scrollIntoView({block: 'center'})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Screenshots of the deletion flow.")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="The running demo.")
    parser.add_argument("--username", default="editor", help="An Editor's login.")
    parser.add_argument("--password", default="demo")
    parser.add_argument(
        "--segment", default="Churn risk in France or Spain", help="Segment to delete."
    )
    parser.add_argument("--out", type=Path, default=DOCS, help="Folder for the PNGs.")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--timeout", type=float, default=120, help="Seconds to wait for the end.")
    args = parser.parse_args(argv)
    base = args.url.rstrip("/")
    args.out.mkdir(parents=True, exist_ok=True)
    name = args.segment

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        context = browser.new_context(
            viewport={"width": args.width, "height": args.height}, device_scale_factor=1
        )
        context.set_default_timeout(15_000)
        page = context.new_page()

        page.goto(f"{base}/accounts/login/")
        page.get_by_label("Username").fill(args.username)
        page.get_by_label("Password").fill(args.password)
        page.get_by_role("button", name=re.compile("log in", re.I)).click()
        expect(page.get_by_label("Username")).to_have_count(0)

        # 1. The segment page, reached from the list of segments.
        page.goto(f"{base}/segments/")
        page.get_by_role("link", name=name, exact=True).first.click()
        expect(page.get_by_role("heading", name=name, exact=True).first).to_be_visible()
        actions = page.get_by_role("button", name="Segment actions")
        expect(actions).to_be_visible()
        count = page.get_by_test_id("member-count").inner_text().replace(",", "").strip()
        if not count.isdigit() or int(count) == 0:
            print(f"{name!r} has no profiles to delete; pass another --segment.", file=sys.stderr)
            return 1
        shoot(page, "flow-1-segment", args.out)
        segment_url = page.url

        # 6. The builder, with the segment's rules and their counts (shot
        # now, while the segment still has its people), via ••• → Edit.
        actions.click()
        page.get_by_role("menu").get_by_role("menuitem", name="Edit", exact=True).click()
        expect(page.get_by_role("heading", name=re.compile(r"^Edit "))).to_be_visible()
        counted = re.compile(r"[1-9][\d,]* (people|person)")
        expect(page.get_by_role("status").filter(has_text=counted).first).to_be_visible()
        shoot(page, "flow-6-builder", args.out)
        page.goto(segment_url)
        actions = page.get_by_role("button", name="Segment actions")

        # 2. The ••• menu, open.
        actions.click()
        menu = page.get_by_role("menu")
        delete_item = menu.get_by_role("menuitem", name=re.compile(r"^Delete Profiles"))
        expect(delete_item).to_be_visible()
        shoot(page, "flow-2-menu", args.out)

        # 3. The dialog, with the segment's name typed: the button is enabled.
        delete_item.click()
        dialog = page.get_by_role("dialog", name=re.compile(r"^Delete .*\?$"))
        expect(dialog).to_be_visible()
        expect(dialog.get_by_test_id("deletion-impact")).to_be_visible()  # loaded after opening
        confirm = dialog.get_by_label(re.compile("to confirm", re.I))
        expect(confirm).to_be_focused()
        confirm.fill(name)
        delete_button = dialog.get_by_role("button", name=re.compile(r"^Delete Profiles"))
        expect(delete_button).to_be_enabled()
        delete_button.focus()
        shoot(page, "flow-3-dialog", args.out)

        # 4. Confirmed: the page shows the job's progress in place.
        delete_button.click()
        bar = page.get_by_role("progressbar", name="Deletion progress")
        expect(bar).to_be_visible()
        center(bar)
        shoot(page, "flow-4-progress", args.out)

        # 5. The worker finishes; the page says what was deleted.
        done = page.get_by_role("heading", name="Deletion complete", exact=True)
        expect(done).to_be_visible(timeout=args.timeout * 1000)
        center(done)
        shoot(page, "flow-5-done", args.out)

        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
