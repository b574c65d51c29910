from tools.docs import main


def test_committed_documents_match_the_declarations() -> None:
    # Fails when a declaration, a contract or the topology changed without `make docs`.
    assert main(["--check"]) == 0
