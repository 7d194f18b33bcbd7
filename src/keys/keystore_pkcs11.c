/* PKCS#11 key-store adapter (tested against SoftHSM2). The module is dlopen()ed once per
 * process (shared by every bv_keys_t that names it), initialised for OS locking, and the
 * token is found by label. Each thread has its own session (thread-local), logged in with
 * the user PIN. The master key is an AES-256 secret key object labelled
 * "boveda-master-v<N>", generated in the token (CKA_TOKEN, CKA_SENSITIVE, not
 * CKA_EXTRACTABLE), used only with CKM_AES_GCM to wrap/unwrap data keys (C_Encrypt /
 * C_Decrypt of the 32-byte data key with a 12-byte random IV and the wrap AAD: GCM binds
 * the AAD, which CKM_AES_KEY_WRAP_PAD cannot). Signing keys are token key pairs labelled
 * "boveda-sign-<kid>", private half sensitive and non-extractable.
 *
 * Lost sessions: when a call fails with a session/token/handle error (the token was
 * removed, the module restarted, someone called C_CloseAllSessions), the thread's session
 * is closed, a new one is opened and logged in, every cached object handle of that session
 * is dropped and looked up again, and the operation is retried once. */
#include <dlfcn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit-1/p11-kit/pkcs11.h>

#include "base/errors.h"
#include "base/log.h"
#include "keys/keys_internal.h"

/* Private return value of our own operations: the object does not exist (not retried). */
#define RV_NOT_FOUND (CKR_VENDOR_DEFINED | 0x0b0ef001UL)

/* ---- process-wide module registry: C_Initialize / C_Finalize once per module ---- */

typedef struct module {
    char path[1024];
    void *dl;
    CK_FUNCTION_LIST_PTR fl;
    int refs;
    int we_initialized;
    struct module *next;
} module_t;

static pthread_mutex_t modules_mu = PTHREAD_MUTEX_INITIALIZER;
static module_t *modules;

static int module_acquire(const char *path, module_t **out)
{
    module_t *m;
    int rc = BV_EKEYSTORE;
    pthread_mutex_lock(&modules_mu);
    for (m = modules; m != NULL; m = m->next)
        if (strcmp(m->path, path) == 0)
            break;
    if (m != NULL) {
        m->refs++;
        *out = m;
        rc = 0;
        goto out;
    }
    if ((m = calloc(1, sizeof(*m))) == NULL) {
        rc = BV_ENOMEM;
        goto out;
    }
    snprintf(m->path, sizeof(m->path), "%s", path);
    m->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (m->dl == NULL) {
        bv_log_error("cannot load PKCS#11 module", "\"path\":\"%s\"", path);
        free(m);
        goto out;
    }
    CK_C_GetFunctionList get = (CK_C_GetFunctionList)dlsym(m->dl, "C_GetFunctionList");
    if (get == NULL || get(&m->fl) != CKR_OK || m->fl == NULL) {
        bv_log_error("PKCS#11 module has no function list", "\"path\":\"%s\"", path);
        dlclose(m->dl);
        free(m);
        goto out;
    }
    CK_C_INITIALIZE_ARGS args;
    memset(&args, 0, sizeof(args));
    args.flags = CKF_OS_LOCKING_OK;
    CK_RV rv = m->fl->C_Initialize(&args);
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        bv_log_error("PKCS#11 C_Initialize failed", "\"path\":\"%s\",\"rv\":\"0x%lx\"", path,
                     (unsigned long)rv);
        dlclose(m->dl);
        free(m);
        goto out;
    }
    m->we_initialized = rv == CKR_OK;
    m->refs = 1;
    m->next = modules;
    modules = m;
    *out = m;
    rc = 0;
out:
    pthread_mutex_unlock(&modules_mu);
    return rc;
}

static void module_release(module_t *m)
{
    if (m == NULL)
        return;
    pthread_mutex_lock(&modules_mu);
    if (--m->refs == 0) {
        for (module_t **pp = &modules; *pp != NULL; pp = &(*pp)->next) {
            if (*pp == m) {
                *pp = m->next;
                break;
            }
        }
        if (m->we_initialized)
            m->fl->C_Finalize(NULL);
        dlclose(m->dl);
        free(m);
    }
    pthread_mutex_unlock(&modules_mu);
}

/* ---- adapter state ---- */

typedef struct handle_entry {
    char label[96];
    CK_OBJECT_CLASS cls;
    CK_OBJECT_HANDLE h;
    struct handle_entry *next;
} handle_entry_t;

typedef struct p11_ks p11_ks_t;
typedef struct sess {
    p11_ks_t *owner;
    CK_SESSION_HANDLE h;
    int open;
    handle_entry_t *handles; /* object handles found through this session */
    struct sess *next;
} sess_t;

struct p11_ks {
    bv_keystore_t base;
    module_t *mod;
    CK_FUNCTION_LIST_PTR fl;
    char token[33];
    char *pin;
    size_t pin_len;
    pthread_key_t tls;
    int tls_ok;
    pthread_mutex_t mu; /* guards sessions */
    sess_t *sessions;
};

static void clear_handles(sess_t *s)
{
    while (s->handles != NULL) {
        handle_entry_t *n = s->handles->next;
        free(s->handles);
        s->handles = n;
    }
}

static void drop_session(sess_t *s)
{
    if (s->open)
        s->owner->fl->C_CloseSession(s->h); /* may already be gone: ignore */
    s->open = 0;
    clear_handles(s);
}

static void on_thread_exit(void *arg)
{
    sess_t *s = arg;
    p11_ks_t *p = s->owner;
    pthread_mutex_lock(&p->mu);
    for (sess_t **pp = &p->sessions; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    drop_session(s);
    pthread_mutex_unlock(&p->mu);
    free(s);
}

static int is_session_lost(CK_RV rv)
{
    return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED || rv == CKR_TOKEN_NOT_PRESENT ||
           rv == CKR_DEVICE_REMOVED || rv == CKR_OBJECT_HANDLE_INVALID || rv == CKR_KEY_HANDLE_INVALID ||
           rv == CKR_USER_NOT_LOGGED_IN || rv == CKR_TOKEN_NOT_RECOGNIZED;
}

static CK_RV find_slot(p11_ks_t *p, CK_SLOT_ID *slot_out)
{
    CK_ULONG n = 0;
    CK_SLOT_ID *slots = NULL;
    CK_RV rv = p->fl->C_GetSlotList(CK_TRUE, NULL, &n);
    if (rv != CKR_OK)
        return rv;
    if (n == 0)
        return CKR_TOKEN_NOT_PRESENT;
    if ((slots = calloc(n, sizeof(*slots))) == NULL)
        return CKR_HOST_MEMORY;
    if ((rv = p->fl->C_GetSlotList(CK_TRUE, slots, &n)) != CKR_OK)
        goto out;
    rv = CKR_TOKEN_NOT_PRESENT;
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        if (p->fl->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
            continue;
        if (memcmp(ti.label, p->token, 32) == 0) {
            *slot_out = slots[i];
            rv = CKR_OK;
            break;
        }
    }
out:
    free(slots);
    return rv;
}

static CK_RV open_session(p11_ks_t *p, sess_t *s)
{
    CK_SLOT_ID slot;
    CK_RV rv = find_slot(p, &slot);
    if (rv != CKR_OK)
        return rv;
    rv = p->fl->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s->h);
    if (rv != CKR_OK)
        return rv;
    s->open = 1;
    /* Login is per application and token: the first session logs in all of them; after
     * the last session closed (C_CloseAllSessions) the login is gone and must be redone. */
    rv = p->fl->C_Login(s->h, CKU_USER, (CK_UTF8CHAR_PTR)p->pin, p->pin_len);
    if (rv == CKR_USER_ALREADY_LOGGED_IN)
        rv = CKR_OK;
    if (rv != CKR_OK)
        drop_session(s);
    return rv;
}

static sess_t *thread_session(p11_ks_t *p, CK_RV *rv_out)
{
    sess_t *s = pthread_getspecific(p->tls);
    *rv_out = CKR_OK;
    if (s == NULL) {
        if ((s = calloc(1, sizeof(*s))) == NULL) {
            *rv_out = CKR_HOST_MEMORY;
            return NULL;
        }
        s->owner = p;
        if (pthread_setspecific(p->tls, s) != 0) {
            free(s);
            *rv_out = CKR_HOST_MEMORY;
            return NULL;
        }
        pthread_mutex_lock(&p->mu);
        s->next = p->sessions;
        p->sessions = s;
        pthread_mutex_unlock(&p->mu);
    }
    if (!s->open)
        *rv_out = open_session(p, s);
    return s;
}

typedef CK_RV (*op_fn)(p11_ks_t *p, sess_t *s, void *arg);

/* Runs op on this thread's session; on a lost session/token/handle reopens, re-logs in,
 * forgets cached handles and retries once. Returns the final CK_RV. */
static CK_RV run_op(p11_ks_t *p, const char *what, op_fn op, void *arg)
{
    CK_RV rv;
    sess_t *s = thread_session(p, &rv);
    if (s == NULL)
        return rv;
    if (rv == CKR_OK)
        rv = op(p, s, arg);
    if (is_session_lost(rv)) {
        bv_log_warn("PKCS#11 session lost: reopening and retrying once", "\"op\":\"%s\",\"rv\":\"0x%lx\"",
                    what, (unsigned long)rv);
        drop_session(s);
        rv = open_session(p, s);
        if (rv == CKR_OK)
            rv = op(p, s, arg);
    }
    if (rv != CKR_OK && rv != RV_NOT_FOUND)
        bv_log_error("PKCS#11 operation failed", "\"op\":\"%s\",\"rv\":\"0x%lx\"", what, (unsigned long)rv);
    return rv;
}

/* Finds an object by class and label, through the session's handle cache. */
static CK_RV find_object(p11_ks_t *p, sess_t *s, CK_OBJECT_CLASS cls, const char *label,
                         CK_OBJECT_HANDLE *h_out)
{
    for (handle_entry_t *e = s->handles; e != NULL; e = e->next) {
        if (e->cls == cls && strcmp(e->label, label) == 0) {
            *h_out = e->h;
            return CKR_OK;
        }
    }
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_LABEL, (void *)label, strlen(label)},
    };
    CK_ULONG n = 0;
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_RV rv = p->fl->C_FindObjectsInit(s->h, tmpl, 2);
    if (rv != CKR_OK)
        return rv;
    rv = p->fl->C_FindObjects(s->h, &h, 1, &n);
    CK_RV rv2 = p->fl->C_FindObjectsFinal(s->h);
    if (rv == CKR_OK)
        rv = rv2;
    if (rv != CKR_OK)
        return rv;
    if (n == 0)
        return RV_NOT_FOUND;
    handle_entry_t *e = calloc(1, sizeof(*e));
    if (e != NULL) {
        snprintf(e->label, sizeof(e->label), "%s", label);
        e->cls = cls;
        e->h = h;
        e->next = s->handles;
        s->handles = e;
    }
    *h_out = h;
    return CKR_OK;
}

static void master_label(int version, char out[96])
{
    snprintf(out, 96, "boveda-master-v%d", version);
}

static void sign_label(const char *kid, char out[96])
{
    snprintf(out, 96, "boveda-sign-%s", kid);
}

/* ---- master keys ---- */

typedef struct {
    int version;
    int create;
    int created;
} ensure_arg_t;

static CK_RV op_master_ensure(p11_ks_t *p, sess_t *s, void *varg)
{
    ensure_arg_t *a = varg;
    char label[96];
    CK_OBJECT_HANDLE h;
    master_label(a->version, label);
    CK_RV rv = find_object(p, s, CKO_SECRET_KEY, label, &h);
    if (rv != RV_NOT_FOUND || !a->create)
        return rv;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_ULONG value_len = BV_KEYS_KEY_LEN;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_VALUE_LEN, &value_len, sizeof(value_len)},
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &yes, sizeof(yes)},
        {CKA_EXTRACTABLE, &no, sizeof(no)},
        {CKA_ENCRYPT, &yes, sizeof(yes)},
        {CKA_DECRYPT, &yes, sizeof(yes)},
        {CKA_WRAP, &yes, sizeof(yes)},
        {CKA_UNWRAP, &yes, sizeof(yes)},
        {CKA_SIGN, &no, sizeof(no)},
        {CKA_VERIFY, &no, sizeof(no)},
        {CKA_LABEL, label, strlen(label)},
    };
    CK_MECHANISM mech = {CKM_AES_KEY_GEN, NULL, 0};
    rv = p->fl->C_GenerateKey(s->h, &mech, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &h);
    if (rv == CKR_OK)
        a->created = 1;
    return rv;
}

static int p11_master_ensure(bv_keystore_t *ks, int version, int create)
{
    p11_ks_t *p = (p11_ks_t *)ks;
    ensure_arg_t a = {.version = version, .create = create};
    CK_RV rv = run_op(p, "master_ensure", op_master_ensure, &a);
    if (rv == RV_NOT_FOUND)
        return BV_ENOTFOUND;
    if (rv != CKR_OK)
        return BV_EKEYSTORE;
    if (a.created)
        bv_log_info("master key created", "\"adapter\":\"pkcs11\",\"version\":%d", version);
    return 0;
}

typedef struct {
    int version;
    int encrypt;
    const void *aad;
    size_t aad_len;
    const unsigned char *iv;
    const unsigned char *in;
    size_t in_len;
    unsigned char *out;
    CK_ULONG out_len; /* in: capacity; out: length */
} gcm_arg_t;

static CK_RV op_gcm(p11_ks_t *p, sess_t *s, void *varg)
{
    gcm_arg_t *a = varg;
    char label[96];
    CK_OBJECT_HANDLE h;
    master_label(a->version, label);
    CK_RV rv = find_object(p, s, CKO_SECRET_KEY, label, &h);
    if (rv != CKR_OK)
        return rv;
    CK_GCM_PARAMS gp;
    memset(&gp, 0, sizeof(gp));
    gp.pIv = (CK_BYTE_PTR)a->iv;
    gp.ulIvLen = BV_KEYS_NONCE_LEN;
    gp.ulIvBits = BV_KEYS_NONCE_LEN * 8;
    gp.pAAD = (CK_BYTE_PTR)a->aad;
    gp.ulAADLen = a->aad_len;
    gp.ulTagBits = BV_KEYS_TAG_LEN * 8;
    CK_MECHANISM mech = {CKM_AES_GCM, &gp, sizeof(gp)};
    CK_ULONG out_len = a->out_len;
    if (a->encrypt) {
        if ((rv = p->fl->C_EncryptInit(s->h, &mech, h)) != CKR_OK)
            return rv;
        rv = p->fl->C_Encrypt(s->h, (CK_BYTE_PTR)a->in, a->in_len, a->out, &out_len);
    } else {
        if ((rv = p->fl->C_DecryptInit(s->h, &mech, h)) != CKR_OK)
            return rv;
        rv = p->fl->C_Decrypt(s->h, (CK_BYTE_PTR)a->in, a->in_len, a->out, &out_len);
    }
    if (rv == CKR_OK)
        a->out_len = out_len;
    return rv;
}

static int p11_wrap(bv_keystore_t *ks, int version, const void *aad, size_t aad_len, const unsigned char *key,
                    size_t len, bv_buf_t *out)
{
    unsigned char nonce[BV_KEYS_NONCE_LEN], ct[256 + BV_KEYS_TAG_LEN];
    if (len > 256)
        return BV_EINVALID;
    bv_random(nonce, sizeof(nonce));
    gcm_arg_t a = {.version = version,
                   .encrypt = 1,
                   .aad = aad,
                   .aad_len = aad_len,
                   .iv = nonce,
                   .in = key,
                   .in_len = len,
                   .out = ct,
                   .out_len = sizeof(ct)};
    CK_RV rv = run_op((p11_ks_t *)ks, "wrap", op_gcm, &a);
    if (rv == RV_NOT_FOUND) {
        bv_log_error("master key not found in the token", "\"version\":%d", version);
        return BV_EKEYSTORE;
    }
    if (rv != CKR_OK || a.out_len != len + BV_KEYS_TAG_LEN)
        return BV_EKEYSTORE;
    if (bv_buf_append(out, nonce, sizeof(nonce)) != 0 || bv_buf_append(out, ct, a.out_len) != 0)
        return BV_ENOMEM;
    return 0;
}

static int p11_unwrap(bv_keystore_t *ks, int version, const void *aad, size_t aad_len,
                      const unsigned char *blob, size_t blob_len, unsigned char *key_out, size_t cap,
                      size_t *len_out)
{
    unsigned char pt[256 + BV_KEYS_TAG_LEN];
    if (blob_len < BV_KEYS_NONCE_LEN + BV_KEYS_TAG_LEN ||
        blob_len - BV_KEYS_NONCE_LEN - BV_KEYS_TAG_LEN > cap || blob_len > BV_KEYS_NONCE_LEN + 256)
        return BV_EINTEGRITY;
    gcm_arg_t a = {.version = version,
                   .encrypt = 0,
                   .aad = aad,
                   .aad_len = aad_len,
                   .iv = blob,
                   .in = blob + BV_KEYS_NONCE_LEN,
                   .in_len = blob_len - BV_KEYS_NONCE_LEN,
                   .out = pt,
                   .out_len = sizeof(pt)};
    CK_RV rv = run_op((p11_ks_t *)ks, "unwrap", op_gcm, &a);
    int rc = 0;
    if (rv == RV_NOT_FOUND) {
        bv_log_error("master key not found in the token", "\"version\":%d", version);
        rc = BV_EKEYSTORE;
    } else if (rv == CKR_ENCRYPTED_DATA_INVALID || rv == CKR_ENCRYPTED_DATA_LEN_RANGE ||
               rv == CKR_DATA_INVALID || rv == CKR_DATA_LEN_RANGE) {
        rc = BV_EINTEGRITY;
    } else if (rv != CKR_OK || a.out_len > cap) {
        rc = BV_EKEYSTORE;
    } else {
        memcpy(key_out, pt, a.out_len);
        *len_out = a.out_len;
    }
    OPENSSL_cleanse(pt, sizeof(pt));
    return rc;
}

/* ---- signing keys ---- */

typedef struct {
    const char *kid;
    bv_keys_alg_t alg;
    EVP_PKEY *pub;
} gen_arg_t;

static CK_RV get_attr(p11_ks_t *p, sess_t *s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE t, unsigned char *buf,
                      CK_ULONG cap, CK_ULONG *len_out)
{
    CK_ATTRIBUTE a = {t, buf, cap};
    CK_RV rv = p->fl->C_GetAttributeValue(s->h, h, &a, 1);
    if (rv == CKR_OK)
        *len_out = a.ulValueLen;
    return rv;
}

static CK_RV op_generate(p11_ks_t *p, sess_t *s, void *varg)
{
    gen_arg_t *a = varg;
    char label[96];
    CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE, priv = CK_INVALID_HANDLE;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ULONG bits = 2048;
    CK_BYTE exponent[] = {0x01, 0x00, 0x01};
    /* DER OID 1.2.840.10045.3.1.7 (prime256v1) */
    CK_BYTE p256_oid[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
    unsigned char buf[600], ebuf[16];
    CK_ULONG len = 0, elen = 0;
    CK_RV rv;
    sign_label(a->kid, label);
    size_t label_len = strlen(label), kid_len = strlen(a->kid);
    CK_ATTRIBUTE priv_tmpl[] = {
        {CKA_TOKEN, &yes, sizeof(yes)},     {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &yes, sizeof(yes)}, {CKA_EXTRACTABLE, &no, sizeof(no)},
        {CKA_SIGN, &yes, sizeof(yes)},      {CKA_DECRYPT, &no, sizeof(no)},
        {CKA_UNWRAP, &no, sizeof(no)},      {CKA_LABEL, label, label_len},
        {CKA_ID, (void *)a->kid, kid_len},
    };
    CK_ULONG n_priv = sizeof(priv_tmpl) / sizeof(priv_tmpl[0]);
    if (a->alg == BV_KEYS_ALG_ES256) {
        CK_ATTRIBUTE pub_tmpl[] = {
            {CKA_TOKEN, &yes, sizeof(yes)},
            {CKA_VERIFY, &yes, sizeof(yes)},
            {CKA_EC_PARAMS, p256_oid, sizeof(p256_oid)},
            {CKA_LABEL, label, label_len},
            {CKA_ID, (void *)a->kid, kid_len},
        };
        CK_MECHANISM mech = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
        rv = p->fl->C_GenerateKeyPair(s->h, &mech, pub_tmpl, 5, priv_tmpl, n_priv, &pub, &priv);
        if (rv != CKR_OK)
            return rv;
        if ((rv = get_attr(p, s, pub, CKA_EC_POINT, buf, sizeof(buf), &len)) != CKR_OK)
            return rv;
        /* CKA_EC_POINT is a DER OCTET STRING holding the uncompressed point (some modules
         * return the bare point). */
        const unsigned char *pt = buf;
        if (len == 67 && buf[0] == 0x04 && buf[1] == 0x41) {
            pt = buf + 2;
            len = 65;
        }
        if (len != 65 || bv_keys_pub_from_ec_point(pt, len, &a->pub) != 0)
            return CKR_GENERAL_ERROR;
        return CKR_OK;
    }
    CK_ATTRIBUTE pub_tmpl[] = {
        {CKA_TOKEN, &yes, sizeof(yes)},          {CKA_VERIFY, &yes, sizeof(yes)},
        {CKA_MODULUS_BITS, &bits, sizeof(bits)}, {CKA_PUBLIC_EXPONENT, exponent, sizeof(exponent)},
        {CKA_LABEL, label, label_len},           {CKA_ID, (void *)a->kid, kid_len},
        {CKA_ENCRYPT, &no, sizeof(no)},
    };
    CK_MECHANISM mech = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    rv = p->fl->C_GenerateKeyPair(s->h, &mech, pub_tmpl, 7, priv_tmpl, n_priv, &pub, &priv);
    if (rv != CKR_OK)
        return rv;
    if ((rv = get_attr(p, s, pub, CKA_MODULUS, buf, sizeof(buf), &len)) != CKR_OK)
        return rv;
    if ((rv = get_attr(p, s, pub, CKA_PUBLIC_EXPONENT, ebuf, sizeof(ebuf), &elen)) != CKR_OK)
        return rv;
    if (bv_keys_pub_from_rsa(buf, len, ebuf, elen, &a->pub) != 0)
        return CKR_GENERAL_ERROR;
    return CKR_OK;
}

static int p11_sign_generate(bv_keystore_t *ks, const char *kid, bv_keys_alg_t alg, EVP_PKEY **pub_out)
{
    gen_arg_t a = {.kid = kid, .alg = alg};
    CK_RV rv = run_op((p11_ks_t *)ks, "sign_generate", op_generate, &a);
    if (rv != CKR_OK) {
        EVP_PKEY_free(a.pub);
        return BV_EKEYSTORE;
    }
    *pub_out = a.pub;
    return 0;
}

typedef struct {
    const char *kid;
    bv_keys_alg_t alg;
    const unsigned char *in;
    size_t in_len;
    unsigned char sig[512];
    CK_ULONG sig_len;
} sign_arg_t;

static CK_RV op_sign(p11_ks_t *p, sess_t *s, void *varg)
{
    sign_arg_t *a = varg;
    char label[96];
    CK_OBJECT_HANDLE h;
    sign_label(a->kid, label);
    CK_RV rv = find_object(p, s, CKO_PRIVATE_KEY, label, &h);
    if (rv != CKR_OK)
        return rv;
    CK_MECHANISM mech = {a->alg == BV_KEYS_ALG_ES256 ? CKM_ECDSA : CKM_SHA256_RSA_PKCS, NULL, 0};
    if ((rv = p->fl->C_SignInit(s->h, &mech, h)) != CKR_OK)
        return rv;
    a->sig_len = sizeof(a->sig);
    return p->fl->C_Sign(s->h, (CK_BYTE_PTR)a->in, a->in_len, a->sig, &a->sig_len);
}

static int p11_sign(bv_keystore_t *ks, const char *kid, bv_keys_alg_t alg, const void *data, size_t len,
                    bv_buf_t *sig_out)
{
    unsigned char digest[SHA256_DIGEST_LENGTH];
    sign_arg_t a = {.kid = kid, .alg = alg, .in = data, .in_len = len};
    if (alg == BV_KEYS_ALG_ES256) {
        /* CKM_ECDSA signs a digest we compute (RFC 7518 §3.4: ES256 = ECDSA P-256 SHA-256). */
        SHA256(data, len, digest);
        a.in = digest;
        a.in_len = sizeof(digest);
    }
    CK_RV rv = run_op((p11_ks_t *)ks, "sign", op_sign, &a);
    if (rv == RV_NOT_FOUND) {
        bv_log_error("signing key not found in the token", "\"kid\":\"%s\"", kid);
        return BV_EKEYSTORE;
    }
    if (rv != CKR_OK)
        return BV_EKEYSTORE;
    if (alg == BV_KEYS_ALG_ES256 && a.sig_len != 64) {
        /* PKCS#11 ECDSA output is r||s; accept a DER signature from odd modules too. */
        unsigned char raw[64];
        if (bv_keys_ecdsa_der_to_raw(a.sig, a.sig_len, raw) != 0)
            return BV_EKEYSTORE;
        return bv_buf_append(sig_out, raw, sizeof(raw)) == 0 ? 0 : BV_ENOMEM;
    }
    return bv_buf_append(sig_out, a.sig, a.sig_len) == 0 ? 0 : BV_ENOMEM;
}

static void p11_close(bv_keystore_t *ks)
{
    p11_ks_t *p = (p11_ks_t *)ks;
    if (p == NULL)
        return;
    if (p->tls_ok)
        pthread_key_delete(p->tls); /* no destructor runs after this: we free them below */
    pthread_mutex_lock(&p->mu);
    while (p->sessions != NULL) {
        sess_t *s = p->sessions;
        p->sessions = s->next;
        drop_session(s);
        free(s);
    }
    pthread_mutex_unlock(&p->mu);
    if (p->pin != NULL) {
        OPENSSL_cleanse(p->pin, p->pin_len);
        free(p->pin);
    }
    module_release(p->mod);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

typedef struct {
    unsigned char *out;
    size_t len;
} random_arg_t;

static CK_RV op_random(p11_ks_t *p, sess_t *s, void *arg)
{
    random_arg_t *a = arg;
    return p->fl->C_GenerateRandom(s->h, a->out, (CK_ULONG)a->len);
}

static int p11_random(bv_keystore_t *ks, void *out, size_t len)
{
    random_arg_t a = {.out = out, .len = len};
    return run_op((p11_ks_t *)ks, "random", op_random, &a) == CKR_OK ? 0 : BV_EKEYSTORE;
}

static const bv_keystore_ops_t p11_ops = {
    .name = "pkcs11",
    .master_ensure = p11_master_ensure,
    .wrap = p11_wrap,
    .unwrap = p11_unwrap,
    .sign_generate = p11_sign_generate,
    .sign = p11_sign,
    .random = p11_random,
    .close = p11_close,
};

static int read_pin_file(const char *path, char **pin_out, size_t *len_out)
{
    char buf[256];
    FILE *fp = fopen(path, "re");
    if (fp == NULL) {
        bv_log_error("cannot read the PKCS#11 PIN file", "\"path\":\"%s\"", path);
        return BV_EKEYSTORE;
    }
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    buf[n] = '\0';
    *pin_out = strdup(buf);
    *len_out = n;
    OPENSSL_cleanse(buf, sizeof(buf));
    return *pin_out != NULL ? 0 : BV_ENOMEM;
}

int bv_keystore_pkcs11_open(const bv_config_t *cfg, bv_keystore_t **out)
{
    p11_ks_t *p = NULL;
    int rc = BV_EKEYSTORE;
    CK_RV rv;
    *out = NULL;
    if (cfg->pkcs11_module == NULL || cfg->pkcs11_module[0] == '\0' || cfg->pkcs11_token == NULL ||
        strlen(cfg->pkcs11_token) > 32) {
        bv_log_error(
            "PKCS#11 key store needs BOVEDA_PKCS11_MODULE and BOVEDA_PKCS11_TOKEN (at most 32 bytes)", NULL);
        return BV_ECONFIG;
    }
    if ((p = calloc(1, sizeof(*p))) == NULL)
        return BV_ENOMEM;
    p->base.ops = &p11_ops;
    pthread_mutex_init(&p->mu, NULL);
    memset(p->token, ' ', 32); /* token labels are blank-padded, not NUL-terminated */
    memcpy(p->token, cfg->pkcs11_token, strlen(cfg->pkcs11_token));
    if (cfg->pkcs11_pin != NULL && cfg->pkcs11_pin[0] != '\0') {
        p->pin_len = strlen(cfg->pkcs11_pin);
        if ((p->pin = strdup(cfg->pkcs11_pin)) == NULL) {
            rc = BV_ENOMEM;
            goto out;
        }
    } else if (cfg->pkcs11_pin_file != NULL && cfg->pkcs11_pin_file[0] != '\0') {
        if ((rc = read_pin_file(cfg->pkcs11_pin_file, &p->pin, &p->pin_len)) != 0)
            goto out;
        rc = BV_EKEYSTORE;
    } else {
        bv_log_error("PKCS#11 key store needs BOVEDA_PKCS11_PIN or BOVEDA_PKCS11_PIN_FILE", NULL);
        rc = BV_ECONFIG;
        goto out;
    }
    if (pthread_key_create(&p->tls, on_thread_exit) != 0)
        goto out;
    p->tls_ok = 1;
    if ((rc = module_acquire(cfg->pkcs11_module, &p->mod)) != 0)
        goto out;
    rc = BV_EKEYSTORE;
    p->fl = p->mod->fl;
    /* Open this thread's session now so a wrong token label or PIN stops start-up. */
    if (thread_session(p, &rv) == NULL || rv != CKR_OK) {
        bv_log_error("cannot open a logged-in session on the PKCS#11 token",
                     "\"token\":\"%.32s\",\"rv\":\"0x%lx\"", cfg->pkcs11_token, (unsigned long)rv);
        goto out;
    }
    *out = &p->base;
    p = NULL;
    rc = 0;
out:
    p11_close(p ? &p->base : NULL);
    return rc;
}
