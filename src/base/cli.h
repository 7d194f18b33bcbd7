/* Helpers of the `boveda admin ...` commands: options after the command word (argv[0] is
 * the group, argv[1] the command, options from argv[2]). */
#ifndef BV_BASE_CLI_H
#define BV_BASE_CLI_H

/* Value of `NAME VALUE` among argv[2..], NULL if absent; sets *bad when NAME is the last
 * word (no value). */
const char *bv_cli_opt(int argc, char **argv, const char *name, int *bad);
/* 1 if the flag NAME is among argv[2..]. */
int bv_cli_flag(int argc, char **argv, const char *name);

#endif
