lint -c @CASES@/antivirus-nodb.yml
