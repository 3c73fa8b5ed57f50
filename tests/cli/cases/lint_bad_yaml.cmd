lint -c @CASES@/bad-yaml.yml
