import re

import sweeplab


def test_version_is_pep440():
    assert re.fullmatch(r"\d+\.\d+\.\d+", sweeplab.__version__)
