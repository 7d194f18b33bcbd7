/* boveda: subcommands only. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/app.h"
#include "base/config.h"
#include "base/log.h"
#include "core/core.h"
#include "queue/queue.h"

typedef struct {
    const char *name;
    const char *summary;
    const char *usage;
    int (*run)(bv_config_t *cfg, int argc, char **argv);
    int needs_config;
} command_t;

static int cmd_serve(bv_config_t *cfg, int argc, char **argv);
static int cmd_migrate(bv_config_t *cfg, int argc, char **argv);
static int cmd_version(bv_config_t *cfg, int argc, char **argv);
static int cmd_config(bv_config_t *cfg, int argc, char **argv);
static int cmd_admin(bv_config_t *cfg, int argc, char **argv);
static int cmd_worker(bv_config_t *cfg, int argc, char **argv);
static int cmd_help(bv_config_t *cfg, int argc, char **argv);

static const command_t commands[] = {
    {"serve", "run the bank: API, workers (initialises an empty data directory)",
     "boveda [--config FILE] serve\n\n"
     "Initialises the data directory if empty (schema, keys), applies migrations, then serves\n"
     "HTTP (and HTTPS when BOVEDA_HTTPS_LISTEN is set) until SIGTERM or SIGINT, when it stops\n"
     "accepting, finishes in-flight requests (bounded by BOVEDA_SHUTDOWN_TIMEOUT_MS) and exits 0.\n",
     cmd_serve, 1},
    {"core", "serve the ledger as a separate core platform (docs/core-contract.md)",
     "boveda [--config FILE] core\n\n"
     "Serves the ledger of its own data directory over the core contract under /core/v1/ (bearer\n"
     "BOVEDA_CORE_TOKEN, at least 32 characters), plus /healthz, /readyz, /metrics and the ledger's\n"
     "back-office routes for the admin token. No customer-facing routes and no queue consumers.\n"
     "BOVEDA_CORE_FAULTS injects faults for tests. Stops gracefully on SIGTERM/SIGINT.\n",
     bv_core_serve_main, 1},
    {"worker", "run queue consumers only (no HTTP): boveda worker [--only NAME[,NAME]]",
     "boveda [--config FILE] worker [--only NAME[,NAME]]\n\n"
     "Runs the background consumers (e.g. notify-email, notify-sms, or the group notify) without\n"
     "serving HTTP, for scale-out. Stops gracefully on SIGTERM/SIGINT, returning unfinished\n"
     "messages to their queues.\n",
     cmd_worker, 1},
    {"migrate", "apply pending database migrations and exit",
     "boveda [--config FILE] migrate\n\nApplies every embedded migration not yet recorded; idempotent.\n", cmd_migrate,
     1},
    {"version", "print the version", "boveda version\n", cmd_version, 0},
    {"config", "print the effective configuration (secrets masked)",
     "boveda [--config FILE] config\n\nPrints every BOVEDA_* setting after defaults, the config file and the\n"
     "environment (which wins) are applied. Secrets are shown as ********.\n",
     cmd_config, 1},
    {"admin", "operator tasks: boveda admin <group> ... (see boveda help admin)", NULL, cmd_admin, 1},
    {"help", "help for a command: boveda help <command>", "boveda help [command]\n", cmd_help, 0},
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
    fprintf(f, "Bóveda %s — secure digital-banking back end\n\nusage: boveda [--config FILE] <command> [args]\n\n"
               "commands:\n",
            BOVEDA_VERSION);
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nConfiguration comes from BOVEDA_* environment variables and an optional INI file;\n"
               "the environment wins. `boveda config` shows the effective values.\n");
}

static void admin_usage(FILE *f)
{
    fprintf(f, "usage: boveda [--config FILE] admin <group> [args]\n\ngroups:\n");
    for (size_t i = 0; i < bv_n_admin_commands; i++)
        fprintf(f, "  %-9s %s\n", bv_admin_commands[i].name, bv_admin_commands[i].summary);
}

static int cmd_help(bv_config_t *cfg, int argc, char **argv)
{
    (void)cfg;
    if (argc < 2) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "admin") == 0) {
        admin_usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < N_COMMANDS; i++) {
        if (strcmp(commands[i].name, argv[1]) == 0) {
            printf("%s", commands[i].usage ? commands[i].usage : commands[i].summary);
            return 0;
        }
    }
    fprintf(stderr, "boveda: unknown command '%s'\n", argv[1]);
    return 2;
}

static int cmd_version(bv_config_t *cfg, int argc, char **argv)
{
    (void)cfg, (void)argc, (void)argv;
    printf("boveda %s (%s)\n", BOVEDA_VERSION, BOVEDA_COMMIT);
    return 0;
}

static int cmd_config(bv_config_t *cfg, int argc, char **argv)
{
    (void)argc, (void)argv;
    bv_config_print(cfg, STDOUT_FILENO);
    return 0;
}

static int cmd_migrate(bv_config_t *cfg, int argc, char **argv)
{
    (void)argc, (void)argv;
    bv_app_t app;
    int rc = bv_app_open(&app, cfg, 0);
    int applied = 0, embedded = 0;
    if (rc == 0)
        rc = bv_store_schema_version(app.store, &applied, &embedded);
    if (rc == 0)
        printf("schema version %d\n", applied);
    bv_app_close(&app);
    return rc == 0 ? 0 : 1;
}

static int cmd_admin(bv_config_t *cfg, int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        admin_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < bv_n_admin_commands; i++) {
        if (strcmp(bv_admin_commands[i].name, argv[1]) != 0)
            continue;
        bv_app_t app;
        int rc = bv_app_open(&app, cfg, 0);
        int status = rc == 0 ? bv_admin_commands[i].main(&app, argc - 1, argv + 1) : 1;
        bv_app_close(&app);
        return status;
    }
    fprintf(stderr, "boveda: unknown admin group '%s'\n", argv[1]);
    admin_usage(stderr);
    return 2;
}

static int cmd_worker(bv_config_t *cfg, int argc, char **argv)
{
    bv_app_t app;
    int rc = bv_app_open(&app, cfg, 0);
    int status = rc == 0 ? bv_queue_worker_main(&app, argc, argv) : 1;
    bv_app_close(&app);
    return status;
}

static int cmd_serve(bv_config_t *cfg, int argc, char **argv)
{
    (void)argc, (void)argv;
    sigset_t set;
    int sig = 0;
    bv_app_t app;
    /* Block the stop signals in every thread; the main thread waits for them. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    int rc = bv_app_open(&app, cfg, 1);
    if (rc == 0)
        rc = bv_http_start(app.http);
    if (rc != 0) {
        bv_log_error("start-up failed", "\"error\":\"%s\"", bv_err_name(rc));
        bv_app_close(&app);
        return 1;
    }
    bv_log_info("ready", "\"data_dir\":\"%s\",\"version\":\"%s\"", cfg->data_dir, BOVEDA_VERSION);
    sigwait(&set, &sig);
    bv_log_info("signal received, shutting down", "\"signal\":\"%s\"", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    bv_app_close(&app);
    bv_log_info("stopped", NULL);
    return 0;
}

int main(int argc, char **argv)
{
    const char *config_file = NULL;
    int i = 1;
    char err[512];
    /* Everything Bóveda creates (database, WAL, keys, exports) is private to its user. */
    umask(077);
    /* --config FILE may come before or right after the command */
    if (i + 1 < argc && strcmp(argv[i], "--config") == 0) {
        config_file = argv[i + 1];
        i += 2;
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[i], "--version") == 0)
        return cmd_version(NULL, 0, NULL);
    const command_t *cmd = NULL;
    for (size_t k = 0; k < N_COMMANDS; k++)
        if (strcmp(commands[k].name, argv[i]) == 0)
            cmd = &commands[k];
    if (cmd == NULL) {
        fprintf(stderr, "boveda: unknown command '%s' (see boveda --help)\n", argv[i]);
        return 2;
    }
    int sub_argc = argc - i;
    char **sub_argv = argv + i;
    if (sub_argc >= 3 && strcmp(sub_argv[1], "--config") == 0) {
        config_file = sub_argv[2];
        sub_argv[2] = sub_argv[0];
        sub_argv += 2;
        sub_argc -= 2;
    }
    if (sub_argc >= 2 && (strcmp(sub_argv[1], "--help") == 0 || strcmp(sub_argv[1], "-h") == 0) &&
        cmd->run != cmd_admin) {
        char *hargv[] = {"help", (char *)cmd->name};
        return cmd_help(NULL, 2, hargv);
    }
    bv_config_t *cfg = NULL;
    if (cmd->needs_config) {
        if (bv_config_load(config_file, &cfg, err, sizeof(err)) != 0) {
            fprintf(stderr, "boveda: configuration error: %s\n", err);
            return 2;
        }
        bv_log_set_level(cfg->log_level);
    }
    int status = cmd->run(cfg, sub_argc, sub_argv);
    bv_config_free(cfg);
    return status;
}
