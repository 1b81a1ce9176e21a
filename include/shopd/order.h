/*
 * order.h: orders and checkout. A checkout turns the caller's cart into an
 * order on the store's actor: the stock decrements, the order with its items,
 * the ledger rows, the discount use, an outbox row and the payment row in one
 * transaction (group commit: a turn's checkouts share it, a savepoint each),
 * then the payment is created with the store's provider (payment.h). Orders
 * move PENDING -> PAID -> PROCESSING -> SHIPPED -> DELIVERED, or to CANCELLED
 * from PENDING, PAID and PROCESSING (stock returned, payment voided or
 * refunded); every change is an order_events row. A sweeper cancels orders
 * left unpaid past SHOPD_ORDER_PAYMENT_TIMEOUT, on the store's actor.
 */
#ifndef SHOPD_ORDER_H
#define SHOPD_ORDER_H

#include "shopd/api.h"

extern const api_module_t order_module;

/** The order states, in lifecycle order. */
typedef enum order_status_e {
    ORDER_PENDING = 0,
    ORDER_PAID,
    ORDER_PROCESSING,
    ORDER_SHIPPED,
    ORDER_DELIVERED,
    ORDER_CANCELLED,
    ORDER_NSTATUS
} order_status_t;

/** The status named s ("PAID"), or -1. */
int order_status_parse(const char *s);
const char *order_status_name(order_status_t s);
/** True if an order may move from -> to. */
bool order_transition_allowed(order_status_t from, order_status_t to);
/** The states reachable from from, as "PAID, CANCELLED" (buf of 96 bytes). */
const char *order_next_states(order_status_t from, char *buf, size_t n);

#endif
