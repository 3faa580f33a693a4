"""Runs sharing a machine take different GPUs, and a released one is taken again."""

import pytest

from lmlib.train.devices import claimed_device


def test_concurrent_claims_get_different_devices_and_release_them(tmp_path):
    with claimed_device(tmp_path, 2) as first, claimed_device(tmp_path, 2) as second:
        assert {first, second} == {0, 1}
        with pytest.raises(RuntimeError, match="all 2 GPU"):
            with claimed_device(tmp_path, 2):
                pass
    with claimed_device(tmp_path, 2) as again:
        assert again == 0
