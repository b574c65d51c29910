from saga_log.docs import main


def test_committed_asyncapi_documents_match_the_code() -> None:
    # Fails when a contract or the topology changed without `make docs`.
    assert main(["--check"]) == 0
