/* Statements module internals: the renderers (CSV, PDF), the UTF-8 to CP1252 conversion
 * the PDF's built-in fonts need, and what the HTTP routes and the consumer share. */
#ifndef BV_STATEMENTS_INTERNAL_H
#define BV_STATEMENTS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"
#include "ledger/ledger.h"
#include "statements/statements.h"

/* The queue the requests travel on, and its consumer's group. */
#define STATEMENTS_QUEUE "statements"
#define STATEMENTS_DLQ   "statements-dlq"

/* Transient failures tolerated before a request is marked failed. */
#define STATEMENTS_MAX_ATTEMPTS 8

/* What a renderer draws: the core's statement plus presentation details. Borrowed. */
typedef struct {
    const bv_ledger_statement_t *st; /* account, period [from, to), balances, items oldest first */
    const char *bank_name;           /* UTF-8 ("Bóveda") */
    const char *holder_name;         /* UTF-8 */
    const char *locale;              /* "es" | "en" (anything else: "es") */
    int64_t generated_at;            /* microseconds since the epoch */
    bool compress;                   /* PDF: deflate the content streams (off only for tests) */
} statements_doc_t;

/* ---- cp1252.c ---- */
/* Converts UTF-8 to Windows-1252 (the PDF WinAnsiEncoding of the built-in fonts) into out
 * (size n, always NUL-terminated, truncated at n-1 bytes). Characters outside CP1252,
 * control characters and invalid UTF-8 become '?'. Returns the bytes written. */
size_t statements_cp1252(const char *utf8, char *out, size_t n);

/* ---- csv.c ---- */
/* Appends one CSV field (RFC 4180: quoted when it holds a comma, quote, CR or LF; quotes
 * doubled). `protect`: a cell starting with = + - @ TAB or CR gets a leading apostrophe
 * (spreadsheet formula injection) and is quoted. 0 or BV_ENOMEM. */
int statements_csv_cell(bv_buf_t *b, const char *s, bool protect);
/* The statement as CSV (UTF-8, CRLF, a header row; docs/statements.md). 0, BV_ENOMEM. */
int statements_csv_render(const statements_doc_t *d, bv_buf_t *out);

/* ---- pdf.c ---- */
/* Table rows on the first page / on the next ones, and the row slots the totals need. */
#define STATEMENTS_PDF_ROWS_FIRST  45
#define STATEMENTS_PDF_ROWS_NEXT   53
#define STATEMENTS_PDF_TOTAL_SLOTS 6
/* Pages of the PDF of a statement with n movements. */
int statements_pdf_pages(size_t n_items);
/* The statement as an A4 PDF (docs/statements.md). 0, BV_ENOMEM, BV_EINTERNAL (libharu). */
int statements_pdf_render(const statements_doc_t *d, bv_buf_t *out);

/* ---- formatting shared by the renderers and the e-mail ---- */
/* "1.234,56" (es) / "1,234.56" (en) with the currency's exponent; out needs 48 bytes. */
void statements_money(int64_t v, int exponent, const char *locale, char out[48]);
/* A date in UTC: "dd/mm/yyyy" (es) or "yyyy-mm-dd" (en); out needs 16 bytes. */
void statements_date(int64_t us, const char *locale, char out[16]);
/* The period [from, to) as text, the last day being the one before `to`:
 * "del 01/11/2026 al 30/11/2026" / "2026-11-01 to 2026-11-30". out needs 64 bytes. */
void statements_period(int64_t from, int64_t to, const char *locale, char out[64]);
/* The attachment's file name: "estado-de-cuenta-<number>-<from>_<to>.pdf" or
 * "statement-...csv". out needs 100 bytes. */
void statements_filename(const bv_ledger_statement_t *st, const char *format, const char *locale,
                         char out[100]);

/* ---- module state (module.c) ---- */
bv_store_t *statements_store(void);

/* ---- worker.c ---- */
int statements_worker_register(bv_app_t *app);
void statements_worker_unregister(void);

/* ---- http.c ---- */
extern const bv_route_t statements_routes[];
extern const size_t statements_n_routes;

#endif
