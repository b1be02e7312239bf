/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What a store plugin may call: libdmcow-store, built once and linked by
 * cowd, cowctl and every plugin (installed as <dm-cow/cow-store.h> and
 * libdmcow-store.a; see dm-cow-plugin(3)).
 */
#ifndef COW_STORE_H
#define COW_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cow-plugin.h"

/*
 * Say why a call failed, as nbdkit_error() does: @fmt goes to s->error,
 * which cowd and cowctl show the user (say what is wrong and what to do).
 * Returns @err (a negative errno), so that a plugin can write
 * "return cow_store_error(s, -EINVAL, ...);".
 */
int cow_store_error(struct cow_store *s, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Whole reads and writes at @off, retried on EINTR.  0 or a negative errno. */
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

/* Size in bytes of a block device or regular file open on @fd. */
int fd_size(int fd, uint64_t *bytes, int *is_file);

/* CRC-32C (Castagnoli), continuing from @crc (0 to start). */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

#endif
