import logging

from sweeplab import demo


def test_demo_sections_log_their_tables(caplog):
    with caplog.at_level(logging.INFO, logger="sweeplab.demo"):
        demo.sharpness_demo(depth=3, width=8, d_io=2)
        demo.escape_demo(depth=5, max_steps=2000)
    text = caplog.text
    assert "exact (Kronecker K)" in text and "Lanczos over HVP" in text
    assert text.count("stayed") >= 3  # c = 0.5, 0.9, 0.99
