/* File key-store adapter: master keys in <data_dir>/keys/master.key (directory 0700, file
 * 0600, owned by the running user). The file is text, one line per master-key version:
 *
 *     # boveda master keys: keep secret; back up together with the database
 *     1 <64 hex digits>
 *     2 <64 hex digits>
 *
 * A file readable or writable by group or others is refused at open. New versions are
 * added by writing a complete new file next to it and renaming it over the old one, under
 * an exclusive flock on the keys directory, so a crash leaves either file, never half. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/errors.h"
#include "base/log.h"
#include "keys/keys_internal.h"

#define MAX_VERSIONS 4096

typedef struct {
    int version;
    unsigned char key[BV_KEYS_KEY_LEN];
} master_t;

typedef struct {
    bv_keystore_t base;
    pthread_mutex_t mu;
    char dir[4096];
    char path[4200];
    master_t *masters;
    size_t n_masters;
} file_ks_t;

static void wipe_masters(file_ks_t *f)
{
    if (f->masters != NULL) {
        OPENSSL_cleanse(f->masters, f->n_masters * sizeof(master_t));
        free(f->masters);
    }
    f->masters = NULL;
    f->n_masters = 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Checks that fd is a regular file owned by us with no group/other bits. */
static int check_mode(int fd, const char *path)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        bv_log_error("master key file is not a regular file", "\"path\":\"%s\"", path);
        return BV_EKEYSTORE;
    }
    if ((st.st_mode & 077) != 0) {
        bv_log_error("master key file is accessible by group or others: refusing it (chmod 600 it)",
                     "\"path\":\"%s\",\"mode\":\"%04o\"", path, (unsigned)(st.st_mode & 07777));
        return BV_EKEYSTORE;
    }
    if (st.st_uid != geteuid()) {
        bv_log_error("master key file is owned by another user: refusing it", "\"path\":\"%s\",\"uid\":%u",
                     path, (unsigned)st.st_uid);
        return BV_EKEYSTORE;
    }
    return 0;
}

/* (Re)reads the file into f->masters. Missing file: 0 with no masters. Caller holds mu. */
static int load_file(file_ks_t *f)
{
    int fd = -1, rc = BV_EKEYSTORE;
    char *text = NULL;
    size_t cap = 0, len = 0;
    master_t *ms = NULL;
    size_t n = 0;

    fd = open(f->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            wipe_masters(f);
            return 0;
        }
        bv_log_error("cannot open master key file", "\"path\":\"%s\",\"error\":\"%s\"", f->path,
                     strerror(errno));
        return BV_EKEYSTORE;
    }
    if ((rc = check_mode(fd, f->path)) != 0)
        goto out;
    rc = BV_EKEYSTORE;
    for (;;) {
        if (len + 4096 > cap) {
            size_t ncap = cap == 0 ? 8192 : cap * 2;
            char *nt = malloc(ncap);
            if (nt == NULL)
                goto out;
            if (text != NULL) {
                memcpy(nt, text, len);
                OPENSSL_cleanse(text, cap);
                free(text);
            }
            text = nt;
            cap = ncap;
        }
        ssize_t r = read(fd, text + len, cap - len - 1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            goto out;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len > (size_t)MAX_VERSIONS * 80)
            goto out;
    }
    text[len] = '\0';
    ms = calloc(MAX_VERSIONS, sizeof(master_t));
    if (ms == NULL)
        goto out;
    for (char *line = text, *next; line != NULL && *line != '\0'; line = next) {
        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        if (line[0] == '#' || line[0] == '\0')
            continue;
        char *sp = strchr(line, ' ');
        if (sp == NULL || n >= MAX_VERSIONS)
            goto bad;
        int v = atoi(line);
        char *hex = sp + 1;
        if (v <= 0 || strlen(hex) != 2 * BV_KEYS_KEY_LEN)
            goto bad;
        for (int i = 0; i < BV_KEYS_KEY_LEN; i++) {
            int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
            if (hi < 0 || lo < 0)
                goto bad;
            ms[n].key[i] = (unsigned char)(hi << 4 | lo);
        }
        ms[n].version = v;
        n++;
    }
    wipe_masters(f);
    f->masters = ms;
    f->n_masters = n;
    ms = NULL;
    rc = 0;
    goto out;
bad:
    bv_log_error("master key file is malformed", "\"path\":\"%s\"", f->path);
out:
    if (ms != NULL) {
        OPENSSL_cleanse(ms, MAX_VERSIONS * sizeof(master_t));
        free(ms);
    }
    if (text != NULL) {
        OPENSSL_cleanse(text, cap);
        free(text);
    }
    if (fd >= 0)
        close(fd);
    return rc;
}

static const master_t *find_master(file_ks_t *f, int version)
{
    for (size_t i = 0; i < f->n_masters; i++)
        if (f->masters[i].version == version)
            return &f->masters[i];
    return NULL;
}

static int write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Writes every known version plus `extra` as the new file (atomic rename). Caller holds mu
 * and the directory flock. */
static int save_file(file_ks_t *f, const master_t *extra)
{
    char tmp[4300];
    bv_buf_t text = {0};
    int fd = -1, rc = BV_EKEYSTORE;
    char hex[2 * BV_KEYS_KEY_LEN + 1];
    snprintf(tmp, sizeof(tmp), "%s.tmp", f->path);
    if (bv_buf_puts(&text, "# boveda master keys: keep secret; back up together with the database\n") != 0)
        goto out;
    for (size_t i = 0; i <= f->n_masters; i++) {
        const master_t *m = i < f->n_masters ? &f->masters[i] : extra;
        bv_hex(m->key, BV_KEYS_KEY_LEN, hex);
        int prc = bv_buf_printf(&text, "%d %s\n", m->version, hex);
        OPENSSL_cleanse(hex, sizeof(hex));
        if (prc != 0)
            goto out;
    }
    unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 || fchmod(fd, 0600) != 0 || write_all(fd, text.data, text.len) != 0 || fsync(fd) != 0) {
        bv_log_error("cannot write master key file", "\"path\":\"%s\",\"error\":\"%s\"", tmp,
                     strerror(errno));
        goto out;
    }
    close(fd);
    fd = -1;
    if (rename(tmp, f->path) != 0) {
        bv_log_error("cannot replace master key file", "\"path\":\"%s\",\"error\":\"%s\"", f->path,
                     strerror(errno));
        goto out;
    }
    int dfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    rc = 0;
out:
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    if (text.data != NULL)
        OPENSSL_cleanse(text.data, text.cap);
    bv_buf_free(&text);
    return rc;
}

static int file_master_ensure(bv_keystore_t *ks, int version, int create)
{
    file_ks_t *f = (file_ks_t *)ks;
    int rc = 0, dfd = -1;
    master_t fresh;
    pthread_mutex_lock(&f->mu);
    if (find_master(f, version) != NULL)
        goto out;
    /* Another process (an admin command) may have added it: lock the directory and re-read. */
    dfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || flock(dfd, LOCK_EX) != 0) {
        bv_log_error("cannot lock key directory", "\"path\":\"%s\",\"error\":\"%s\"", f->dir,
                     strerror(errno));
        rc = BV_EKEYSTORE;
        goto out;
    }
    if ((rc = load_file(f)) != 0)
        goto out;
    if (find_master(f, version) != NULL)
        goto out;
    if (!create) {
        rc = BV_ENOTFOUND;
        goto out;
    }
    fresh.version = version;
    bv_random(fresh.key, sizeof(fresh.key));
    rc = save_file(f, &fresh);
    OPENSSL_cleanse(&fresh, sizeof(fresh));
    if (rc != 0)
        goto out;
    rc = load_file(f);
    if (rc == 0 && find_master(f, version) == NULL)
        rc = BV_EKEYSTORE;
    if (rc == 0)
        bv_log_info("master key created", "\"adapter\":\"file\",\"version\":%d", version);
out:
    if (dfd >= 0)
        close(dfd); /* releases the flock */
    pthread_mutex_unlock(&f->mu);
    return rc;
}

/* Copies master `version` into key_out, re-reading the file once if it is unknown. */
static int get_master(file_ks_t *f, int version, unsigned char key_out[BV_KEYS_KEY_LEN])
{
    int rc = 0;
    pthread_mutex_lock(&f->mu);
    const master_t *m = find_master(f, version);
    if (m == NULL && (rc = load_file(f)) == 0)
        m = find_master(f, version);
    if (m != NULL)
        memcpy(key_out, m->key, BV_KEYS_KEY_LEN);
    else if (rc == 0) {
        bv_log_error("master key version missing from the key file", "\"path\":\"%s\",\"version\":%d",
                     f->path, version);
        rc = BV_EKEYSTORE;
    }
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static int file_wrap(bv_keystore_t *ks, int version, const void *aad, size_t aad_len,
                     const unsigned char *key, size_t len, bv_buf_t *out)
{
    unsigned char mk[BV_KEYS_KEY_LEN], nonce[BV_KEYS_NONCE_LEN], tag[BV_KEYS_TAG_LEN], ct[256];
    int rc;
    if (len > sizeof(ct))
        return BV_EINVALID;
    if ((rc = get_master((file_ks_t *)ks, version, mk)) != 0)
        return rc;
    bv_random(nonce, sizeof(nonce));
    rc = bv_keys_gcm_seal(mk, nonce, aad, aad_len, key, len, ct, tag);
    OPENSSL_cleanse(mk, sizeof(mk));
    if (rc != 0)
        return rc;
    if (bv_buf_append(out, nonce, sizeof(nonce)) != 0 || bv_buf_append(out, ct, len) != 0 ||
        bv_buf_append(out, tag, sizeof(tag)) != 0)
        return BV_ENOMEM;
    return 0;
}

static int file_unwrap(bv_keystore_t *ks, int version, const void *aad, size_t aad_len,
                       const unsigned char *blob, size_t blob_len, unsigned char *key_out, size_t cap,
                       size_t *len_out)
{
    unsigned char mk[BV_KEYS_KEY_LEN];
    int rc;
    if (blob_len < BV_KEYS_NONCE_LEN + BV_KEYS_TAG_LEN)
        return BV_EINTEGRITY;
    size_t len = blob_len - BV_KEYS_NONCE_LEN - BV_KEYS_TAG_LEN;
    if (len > cap)
        return BV_EINTEGRITY;
    if ((rc = get_master((file_ks_t *)ks, version, mk)) != 0)
        return rc;
    rc = bv_keys_gcm_open(mk, blob, aad, aad_len, blob + BV_KEYS_NONCE_LEN, len,
                          blob + blob_len - BV_KEYS_TAG_LEN, key_out);
    OPENSSL_cleanse(mk, sizeof(mk));
    if (rc == 0)
        *len_out = len;
    return rc;
}

static void file_close(bv_keystore_t *ks)
{
    file_ks_t *f = (file_ks_t *)ks;
    if (f == NULL)
        return;
    wipe_masters(f);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

static int file_random(bv_keystore_t *ks, void *out, size_t len)
{
    (void)ks;
    return RAND_priv_bytes(out, (int)len) == 1 ? 0 : BV_EKEYSTORE;
}

static const bv_keystore_ops_t file_ops = {
    .name = "file",
    .master_ensure = file_master_ensure,
    .wrap = file_wrap,
    .unwrap = file_unwrap,
    .sign_generate = NULL,
    .sign = NULL,
    .random = file_random,
    .close = file_close,
};

int bv_keystore_file_open(const bv_config_t *cfg, bv_keystore_t **out)
{
    file_ks_t *f = NULL;
    struct stat st;
    int rc = BV_EKEYSTORE;
    *out = NULL;
    if ((f = calloc(1, sizeof(*f))) == NULL)
        return BV_ENOMEM;
    f->base.ops = &file_ops;
    pthread_mutex_init(&f->mu, NULL);
    snprintf(f->dir, sizeof(f->dir), "%s/keys", cfg->data_dir);
    snprintf(f->path, sizeof(f->path), "%s/master.key", f->dir);
    if (mkdir(f->dir, 0700) != 0 && errno != EEXIST) {
        bv_log_error("cannot create key directory", "\"path\":\"%s\",\"error\":\"%s\"", f->dir,
                     strerror(errno));
        goto out;
    }
    if (lstat(f->dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        bv_log_error("key directory is not a directory", "\"path\":\"%s\"", f->dir);
        goto out;
    }
    if ((st.st_mode & 077) != 0) {
        bv_log_error("key directory is accessible by group or others: refusing it (chmod 700 it)",
                     "\"path\":\"%s\",\"mode\":\"%04o\"", f->dir, (unsigned)(st.st_mode & 07777));
        goto out;
    }
    pthread_mutex_lock(&f->mu);
    rc = load_file(f);
    pthread_mutex_unlock(&f->mu);
    if (rc != 0)
        goto out;
    *out = &f->base;
    f = NULL;
    rc = 0;
out:
    file_close(f ? &f->base : NULL);
    return rc;
}
