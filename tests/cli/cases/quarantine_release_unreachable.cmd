quarantine release -c @CASES@/xmilter.yml -s /nonexistent/xmilterd.sock 7
