/* SPDX-License-Identifier: GPL-2.0-only */
/* Helpers shared by cowd, cowctl and the plugins. */
#ifndef COW_STORE_H
#define COW_STORE_H

#include <stdint.h>
#include <sys/types.h>

#include "cow-plugin.h"

int cow_store_error(struct cow_store *s, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int pread_full(int fd, void *buf, size_t len, uint64_t off);
int pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
int buf_is_zero(const void *buf, size_t len);

/*
 * Room for element @n in a doubling array: *@arr (of @elem-byte elements,
 * *@max allocated) grows when n == *max.  0 or -ENOMEM (the array stays).
 */
int array_reserve(void *arr, size_t *max, size_t n, size_t elem);

/*
 * Make the store at least @need bytes: extend a file, or the file behind a
 * loop device (and the device).  0 or a negative errno with s->error set.
 */
int store_grow(struct cow_store *s, uint64_t need);

#endif
