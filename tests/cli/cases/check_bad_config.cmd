check -c @CASES@/bad-setting.yml @FIX@/chat.events
