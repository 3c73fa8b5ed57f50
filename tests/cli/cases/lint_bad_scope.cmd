lint -c @CASES@/bad-scope.yml
