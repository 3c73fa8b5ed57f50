lint -c @CASES@/bad-setting.yml
