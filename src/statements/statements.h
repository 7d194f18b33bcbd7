/* Account statements by e-mail (issue 8, docs/statements.md): "al solicitar su reporte se
 * le enviará al correo los movimientos dentro de las fechas solicitadas".
 *
 *   POST /v1/me/statements       {account, from, to, format: pdf|csv} -> 202 {id, status}
 *   GET  /v1/me/statements/{id}  the request's status: queued | sent | failed
 *
 * A request is recorded and a message put on the `statements` queue in one write job; the
 * `statements` consumer (group "statements") loads the statement through the core port,
 * renders it (PDF with libharu, or CSV) and publishes a BV_NOTIFY_STATEMENT e-mail with the
 * file attached in the same write job that marks the request sent. */
#ifndef BV_STATEMENTS_STATEMENTS_H
#define BV_STATEMENTS_STATEMENTS_H

#include "app/app.h"

/* Most movements one statement may hold: a PDF or CSV of this many movements fits in an
 * e-mail attachment (BV_NOTIFY_MAX_ATTACHMENT_BYTES). More is refused with 422 at request
 * time (ask for a shorter period). */
#define BV_STATEMENTS_MAX_MOVEMENTS 400
/* Longest period of one statement, in days. */
#define BV_STATEMENTS_MAX_DAYS 366
/* Requests a customer may make per hour (then 429). */
#define BV_STATEMENTS_PER_HOUR 10

/* ---- application hooks (src/app/app.c) ---- */
/* init ensures the `statements` queue and registers its consumer; routes adds the two
 * routes (scope "banking:read", customer tokens only); fini unregisters the consumer. */
int bv_statements_module_init(bv_app_t *app);
int bv_statements_module_routes(bv_app_t *app);
void bv_statements_module_fini(bv_app_t *app);

#endif
