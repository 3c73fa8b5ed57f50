check -c @CASES@/transfer.yml @SRC@/tests/fixtures/transfer/transfer-policy.events
