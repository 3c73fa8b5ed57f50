/* placeholder */
int xm_quarantine_cli(int argc, char **argv);
int xm_quarantine_cli(int argc, char **argv) { return 1; }
