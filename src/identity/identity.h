/* Identity (issue 5): customers and operators who log in, their Argon2id passwords and the
 * brute-force protection of logins.
 *
 * Passwords are hashed with Argon2id (RFC 9106) into PHC strings
 * ("$argon2id$v=19$m=19456,t=2,p=1$salt$hash"); they are never stored, logged or returned
 * in clear, and every copy this module makes is wiped. Hashing and verification are
 * CPU- and memory-heavy (tens of milliseconds): call them from worker threads, never from
 * an event loop.
 *
 * Brute-force protection is persisted in the database (identity_throttle) under two keys
 * per attempt: the account ("account:<canonical username>", whether the account exists
 * or not, so that throttling itself reveals nothing) and the source IP ("ip:<address>").
 * Each failure counts against both; after `free_failures` failures each further attempt
 * must wait a doubling delay; after `max_failures` the key is locked for `lock_us`.
 * Unknown users and wrong passwords cost the same Argon2id verification (against a dummy
 * hash made at start-up) and get the same outcome. */
#ifndef BV_IDENTITY_IDENTITY_H
#define BV_IDENTITY_IDENTITY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "app/app.h"
#include "store/store.h"

typedef struct bv_identity bv_identity_t;

#define BV_IDENTITY_USERNAME_MAX 64
#define BV_IDENTITY_EMAIL_MAX    254
#define BV_IDENTITY_PHONE_MAX    16 /* "+" and up to 15 digits (E.164) */
#define BV_IDENTITY_NAME_MAX     128
#define BV_IDENTITY_PASSWORD_MIN 12
#define BV_IDENTITY_PASSWORD_MAX 256
#define BV_IDENTITY_PHC_MAX      160

/* Account status. Only `active` accounts may log in. */
#define BV_IDENTITY_PENDING  "pending_onboarding"
#define BV_IDENTITY_ACTIVE   "active"
#define BV_IDENTITY_LOCKED   "locked" /* locked by an operator (see throttle for temporary locks) */
#define BV_IDENTITY_DISABLED "disabled"

typedef struct {
    char id[BV_UUID_STR_LEN + 1]; /* UUIDv7 */
    char username[BV_IDENTITY_USERNAME_MAX + 1];
    char email[BV_IDENTITY_EMAIL_MAX + 1]; /* "" when none */
    char phone[BV_IDENTITY_PHONE_MAX + 1]; /* "" when none */
    char display_name[BV_IDENTITY_NAME_MAX + 1];
    char status[24];
    int64_t created_at, updated_at; /* microseconds */
    int64_t last_login_at;          /* microseconds, 0 = never */
} bv_identity_user_t;

/* Argon2id cost. Defaults: m = 19456 KiB (19 MiB), t = 2, p = 1 (OWASP). */
typedef struct {
    uint32_t m_kib;
    uint32_t t_cost;
    uint32_t parallelism;
} bv_identity_argon2_t;

/* Brute-force protection settings (defaults in brackets). */
typedef struct {
    int max_failures;      /* per account: lock after this many failures [5] */
    int ip_max_failures;   /* per source IP [50] */
    int free_failures;     /* failures before delays start [2] */
    int64_t delay_base_us; /* first delay, doubling per further failure [1 s] */
    int64_t delay_max_us;  /* cap of the delay [60 s] */
    int64_t lock_us;       /* temporary lock; also the window after which failures are forgotten [15 min] */
} bv_identity_lockout_t;

typedef struct {
    bv_identity_argon2_t argon2;
    bv_identity_lockout_t lockout;
} bv_identity_options_t;

/* Options from the configuration (BOVEDA_ARGON2_MEMORY_KIB, BOVEDA_ARGON2_ITERATIONS,
 * BOVEDA_ARGON2_PARALLELISM, BOVEDA_LOGIN_MAX_FAILURES, BOVEDA_LOGIN_IP_MAX_FAILURES,
 * BOVEDA_LOGIN_FREE_FAILURES, BOVEDA_LOGIN_DELAY_MS, BOVEDA_LOGIN_DELAY_MAX_MS,
 * BOVEDA_LOGIN_LOCK_SECONDS; each bounded in the config table). 0, or BV_ECONFIG with one
 * line naming the setting in err for combinations that do not fit together. */
int bv_identity_options_load(const bv_config_t *cfg, bv_identity_options_t *out, char *err, size_t errlen);

/* Creates the identity service over a migrated store (computes the dummy hash: tens of
 * milliseconds). Caller frees with bv_identity_close (NULL accepted). 0, BV_EINVALID
 * (options), BV_ENOMEM, BV_ECRYPTO. */
int bv_identity_open(bv_store_t *store, const bv_identity_options_t *opt, bv_identity_t **out);
void bv_identity_close(bv_identity_t *id);
const bv_identity_options_t *bv_identity_options(const bv_identity_t *id);

/* ---- passwords (pure functions) ---- */

/* Hashes password (len bytes) into a PHC string (out, BV_IDENTITY_PHC_MAX + 1 bytes) with a
 * fresh 16-byte salt. 0, BV_EINVALID (parameters), BV_ECRYPTO. */
int bv_identity_password_hash(const bv_identity_argon2_t *p, const char *password, size_t len,
                              char out[BV_IDENTITY_PHC_MAX + 1]);
/* Verifies password against a PHC string in constant time with respect to the password.
 * 0 = match, BV_EUNAUTHENTICATED = no match, BV_EINVALID = not an Argon2id PHC string we
 * accept (parameters are bounded so a tampered row cannot exhaust memory). */
int bv_identity_password_verify(const char *phc, const char *password, size_t len);
/* 1 if the PHC string was made with parameters other than p (rehash on next login). */
int bv_identity_password_needs_rehash(const char *phc, const bv_identity_argon2_t *p);
/* Password policy: BV_IDENTITY_PASSWORD_MIN..MAX bytes of valid UTF-8 without control
 * characters. 0 or BV_EINVALID (detail, safe to show, in *why when not NULL). */
int bv_identity_password_check(const char *password, size_t len, const char **why);

/* ---- input canonicalisation (pure functions) ---- */

/* Username: 3..64 of [a-z0-9._@-] after ASCII lower-casing, starting with a letter or
 * digit. Writes the canonical form into out. 0 or BV_EINVALID. */
int bv_identity_username_canonical(const char *in, char out[BV_IDENTITY_USERNAME_MAX + 1]);
/* E.164: '+' then 8..15 digits, the first not 0. 0 or BV_EINVALID. */
int bv_identity_phone_valid(const char *phone);
/* A pragmatic e-mail check: local@domain with a dot in the domain, no spaces, <= 254. */
int bv_identity_email_valid(const char *email);

/* ---- throttling (pure functions; the state of one key) ---- */
typedef struct {
    int64_t failures;
    int64_t last_failure_at; /* us */
    int64_t locked_until;    /* us, 0 = not locked */
} bv_identity_throttle_t;

/* How long (us) an attempt at `now` must still wait under the state t: 0 = allowed. After
 * free_failures failures each attempt waits a doubling delay; at max_failures the key is
 * locked for p->lock_us. A lock or window that ran out resets t first. (Accounts use
 * p->free_failures; source IPs use no delay, only their lock.) */
int64_t bv_identity_throttle_wait(const bv_identity_lockout_t *p, int max_failures, int free_failures,
                                  bv_identity_throttle_t *t, int64_t now);
/* Records one failure at now; sets locked_until once max_failures is reached. */
void bv_identity_throttle_fail(const bv_identity_lockout_t *p, int max_failures, bv_identity_throttle_t *t,
                               int64_t now);

/* ---- users ---- */
typedef struct {
    const char *username;     /* required */
    const char *email;        /* may be NULL */
    const char *phone;        /* may be NULL, E.164 */
    const char *display_name; /* may be NULL (defaults to the username) */
    const char *status;       /* NULL = active */
} bv_identity_new_user_t;

/* Creates a user with a password (may be NULL: no password login until one is set).
 * `actor` is recorded in the audit log. 0, BV_EINVALID (a field; *field_out names it),
 * BV_ECONFLICT (username, e-mail or phone taken; *field_out names it), store errors. */
int bv_identity_user_create(bv_identity_t *id, const bv_identity_new_user_t *req, const char *password,
                            size_t password_len, const char *actor, bv_identity_user_t *out,
                            const char **field_out);
/* By id or by (any-case) username. 0 or BV_ENOTFOUND. */
int bv_identity_user_get(bv_identity_t *id, const char *user_id, bv_identity_user_t *out);
int bv_identity_user_find(bv_identity_t *id, const char *username, bv_identity_user_t *out);
/* Up to `limit` users ordered by id, after `after_id` (NULL = from the start). The caller
 * frees *items_out with free(). */
int bv_identity_user_list(bv_identity_t *id, const char *after_id, int limit, bv_identity_user_t **items_out,
                          size_t *n_out);
/* Sets the status (one of the BV_IDENTITY_* statuses). Unlocking (to active) also clears
 * the account's temporary lock. 0, BV_EINVALID, BV_ENOTFOUND. */
int bv_identity_user_set_status(bv_identity_t *id, const char *user_id, const char *status,
                                const char *actor);
/* Replaces the password (policy checked) and clears the account's temporary lock.
 * 0, BV_EINVALID, BV_ENOTFOUND. */
int bv_identity_user_set_password(bv_identity_t *id, const char *user_id, const char *password, size_t len,
                                  const char *actor);
/* JSON view {id, username, email, phone, display_name, status, created_at, updated_at,
 * last_login_at} (times RFC 3339, absent values null). Caller json_decref()s. */
json_t *bv_identity_user_json(const bv_identity_user_t *u);

/* ---- login ---- */
typedef enum {
    BV_LOGIN_OK = 0,
    BV_LOGIN_INVALID,   /* unknown user or wrong password (indistinguishable) */
    BV_LOGIN_THROTTLED, /* must wait retry_after_s (delay or temporary lock) */
    BV_LOGIN_INACTIVE,  /* correct password but the account is not active (user filled) */
} bv_login_outcome_t;

typedef struct {
    bv_login_outcome_t outcome;
    int64_t retry_after_s;   /* THROTTLED */
    int locked;              /* THROTTLED because of a lock (not just a delay) */
    bv_identity_user_t user; /* OK and INACTIVE */
} bv_login_result_t;

/* Password step of a login. Counts the attempt against the account and the source IP
 * before verifying (so parallel guesses cannot overtake the counters), verifies with
 * Argon2id (dummy hash for unknown users), and on success clears the account's counter,
 * refunds the IP's and records the login time (rehashing if the cost changed). Writes an
 * audit record (identity.login) either way. Blocking: workers only.
 * 0 (outcome in *out) or a store/crypto error. */
int bv_identity_authenticate(bv_identity_t *id, const char *username, const char *password,
                             size_t password_len, const char *source_ip, const char *request_id,
                             bv_login_result_t *out);

/* ---- application hooks (src/app/app.c) ---- */

/* The instance opened by the module's init (NULL before). */
bv_identity_t *bv_identity_instance(void);
int bv_identity_module_init(bv_app_t *app);
void bv_identity_module_fini(bv_app_t *app);
/* `boveda admin users create|list|lock|unlock|reset-password [--json]`. */
int bv_identity_admin_main(bv_app_t *app, int argc, char **argv);

#endif
