"""The report in a real browser: headless Chromium opens the tiny grid's page and must see no error.

Skipped only where Chromium or chromedriver is absent (``.ci/run`` installs Debian's ``chromium`` and
``chromium-driver``). The checker itself is tested on a page broken on purpose, so a pass means something.
"""

import pytest
from browser_check import collect, find_chromium, open_page, start_chromium
from tiny_grid import TINY

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        find_chromium() is None,
        reason="Chromium or chromedriver not installed (Debian: apt-get install chromium chromium-driver)",
    ),
]


@pytest.fixture(scope="module")
def chromium():
    driver = start_chromium()
    yield driver
    driver.quit()


def test_checker_reports_a_js_error_and_a_failed_load(chromium, tmp_path):
    broken = tmp_path / "broken.html"
    broken.write_text(
        '<!DOCTYPE html><html><body><img src="missing.png" alt="x"><script>undefinedFunction();</script></body></html>'
    )
    check = open_page(chromium, broken)
    assert any("undefinedFunction" in e for e in check.js_errors), check.problems
    assert any("missing.png" in e for e in check.failed_loads), check.problems
    fetches = tmp_path / "fetches.html"
    (tmp_path / "style.css").write_text("body { color: black; }")
    fetches.write_text(
        '<!DOCTYPE html><html><head><link rel="stylesheet" href="style.css"></head><body>ok</body></html>'
    )
    assert any(u.endswith("style.css") for u in open_page(chromium, fetches).fetched)  # a load that succeeds counts too
    clean = tmp_path / "clean.html"
    clean.write_text(
        '<!DOCTYPE html><html><body><img alt="dot" src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAf'
        'FcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="><script>document.title = "ok";</script></body></html>'
    )
    assert open_page(chromium, clean).problems == []


def test_report_opens_without_errors_and_answers_first(chromium, tiny_run, tmp_path):
    page = tiny_run / "report/index.html"
    check = open_page(chromium, page)
    assert check.problems == [], check.problems
    by_js = chromium.execute_script
    # the summary is the first section of the page and says something per dataset
    assert by_js("return document.querySelector('main section').id") == "summary"
    for dataset in TINY["datasets"]:
        assert by_js(f"return document.querySelector('#summary a[href=\"#{dataset}\"]') !== null"), dataset
        figure = by_js(
            f"const i = document.querySelector('#tradeoff-{dataset} + figure img');"
            "return i && {alt: i.alt, width: i.naturalWidth, shown: i.getBoundingClientRect().height};"
        )
        assert figure and figure["width"] > 0 and figure["shown"] > 0, dataset
        assert "trade-off" in figure["alt"].lower()
    assert by_js("return Array.from(document.images).every(i => i.alt && i.complete && i.naturalWidth > 0)")
    # every summary link lands on an element of the page
    missing = by_js(
        "return Array.from(document.querySelectorAll('#summary a[href^=\"#\"]'))"
        ".map(a => a.getAttribute('href').slice(1)).filter(id => !document.getElementById(id))"
    )
    assert missing == []
    height = by_js("return document.body.scrollHeight")
    print(f"report height in Chromium at 1280 px: {height} px")
    chromium.save_screenshot(str(tmp_path / "report.png"))
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_report_tables_sort_filter_and_open_on_a_link(chromium, tiny_run):
    open_page(chromium, tiny_run / "report/index.html")
    by_js = chromium.execute_script
    table = "document.querySelector('#privacy-statements ~ .statement table.sortable')"
    first_cells = f"return Array.from({table}.rows).slice(1).map(r => r.cells[0].textContent)"
    before = by_js(first_cells)
    assert sorted(before, key=lambda t: float("inf") if t == "∞" else float(t)) == before  # target ε, ascending
    by_js(f"{table}.rows[0].cells[0].click(); {table}.rows[0].cells[0].click();")  # ascending, then descending
    assert by_js(first_cells) == list(reversed(before))
    # a number in the summary opens the collapsed table it links to
    anchor = by_js(
        "const a = document.querySelector('#summary a.num[href^=\"#cost-\"]'); return a && a.getAttribute('href');"
    )
    assert anchor
    by_js(f"document.querySelector('#summary a[href=\"{anchor}\"]').click();")
    assert by_js(f"return document.getElementById('{anchor[1:]}').closest('details').open")
    filters = by_js("return document.querySelectorAll('input.filter').length")
    if filters:
        by_js(
            "const f = document.querySelector('input.filter'); f.value = 'zzz-no-such-row';"
            "f.dispatchEvent(new Event('input'));"
        )
        assert by_js(
            "const t = document.querySelector('input.filter').nextElementSibling;"
            "return Array.from(t.rows).slice(1).every(r => r.hidden)"
        )
    assert collect(chromium, page=chromium.current_url).problems == []
