lint -c @SRC@/etc/xmilter.yml
