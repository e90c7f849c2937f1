import pytest

from vero_admin.pagination import Total


@pytest.mark.parametrize(
    "total, text",
    [
        (Total(48_310), "48,310"),
        (Total(48_310, exact=False), "about 48,000"),
        (Total(1_043_220, exact=False), "about 1.0 million"),
        (Total(2_460_000, exact=False), "about 2.5 million"),
        (Total(87, exact=False), "about 87"),
        (Total(10_000, exact=False, more_than=True), "more than 10,000"),
    ],
)
def test_a_total_says_whether_it_is_exact_an_estimate_or_a_floor(total, text):
    assert str(total) == text
