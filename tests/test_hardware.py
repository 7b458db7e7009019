from tests.machines import ALL


def test_import() -> None:
    assert len(ALL) == 8
