// SPDX-License-Identifier: GPL-2.0-only
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "plugin-loader.h"
#include "cow-store.h"

#ifndef COW_PLUGIN_DIR
#define COW_PLUGIN_DIR "/usr/local/lib/dm-cow/plugins"
#endif

static int dir_exists(const char *dir)
{
	struct stat st;

	return stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
}

/* $COWD_PLUGIN_DIR, else ../plugins next to the program (the build tree),
 * else the installed directory. */
static void default_dir(char *dir, size_t len)
{
	const char *env = getenv("COWD_PLUGIN_DIR");
	char exe[PATH_MAX];
	ssize_t n;

	if (env && *env) {
		snprintf(dir, len, "%s", env);
		return;
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		char *slash;

		exe[n] = 0;
		slash = strrchr(exe, '/');
		if (slash) {
			*slash = 0;
			snprintf(dir, len, "%s/../plugins", exe);
			if (dir_exists(dir))
				return;
		}
	}
	snprintf(dir, len, "%s", COW_PLUGIN_DIR);
}

static int plugin_usable(const struct cow_plugin *p, const char *file)
{
	if (p->api_version != COW_PLUGIN_API_VERSION) {
		log_warn("%s: plugin API version %u, this cowd speaks %u; skipped (rebuild it against this release's cow-plugin.h)", file,
			 p->api_version, COW_PLUGIN_API_VERSION);
		return 0;
	}
	if (p->size < offsetof(struct cow_plugin, used_bytes) || !p->name || !p->probe ||
	    !p->create || !p->open || !p->close || !p->locate || !p->mark || !p->commit ||
	    !p->for_each_mapping || !p->data_phase) {
		log_warn("%s: plugin lacks a required callback; skipped", file);
		return 0;
	}
	return 1;
}

int plugins_load(struct plugin_set *set, const char *dir)
{
	struct dirent **names;
	int n, i;

	memset(set, 0, sizeof(*set));
	if (dir)
		snprintf(set->dir, sizeof(set->dir), "%s", dir);
	else
		default_dir(set->dir, sizeof(set->dir));
	n = scandir(set->dir, &names, NULL, alphasort);
	if (n < 0)
		return -errno;
	for (i = 0; i < n; i++) {
		const char *name = names[i]->d_name;
		size_t len = strlen(name);
		const struct cow_plugin *(*init)(void);
		const struct cow_plugin *p;
		char path[sizeof(set->dir) + 256];
		void *h;

		if (len < 4 || strcmp(name + len - 3, ".so") || set->n == COW_MAX_PLUGINS)
			goto next;
		snprintf(path, sizeof(path), "%s/%s", set->dir, name);
		h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
		if (!h) {
			log_warn("cannot load plugin %s: %s", path, dlerror());
			goto next;
		}
		*(void **)&init = dlsym(h, "cow_plugin_init");
		p = init ? init() : NULL;
		if (!p || !plugin_usable(p, path) || plugins_find(set, p->name)) {
			dlclose(h);
			goto next;
		}
		set->plugin[set->n] = p;
		set->handle[set->n] = h;
		set->n++;
next:
		free(names[i]);
	}
	free(names);
	return set->n;
}

void plugins_unload(struct plugin_set *set)
{
	int i;

	for (i = 0; i < set->n; i++)
		dlclose(set->handle[i]);
	set->n = 0;
}

const struct cow_plugin *plugins_find(const struct plugin_set *set, const char *name)
{
	int i;

	for (i = 0; i < set->n; i++)
		if (!strcmp(set->plugin[i]->name, name))
			return set->plugin[i];
	return NULL;
}

const struct cow_plugin *plugins_probe(const struct plugin_set *set, const void *head, size_t len)
{
	int i;

	for (i = 0; i < set->n; i++)
		if (set->plugin[i]->probe(head, len))
			return set->plugin[i];
	return NULL;
}

#define INSPECT_BYTES (64 * 1024)

int store_match_base_id(const struct cow_plugin *p, struct cow_store *s,
			const struct cow_store_info *info)
{
	char label[sizeof(info->base_id)];

	if (!s->base_id || !*s->base_id)
		return 0;
	if (!COW_PLUGIN_HAS(p, inspect))
		return cow_store_error(s, -EINVAL, "a %s store records no base label: --base-id cannot be checked",
				       p->name);
	snprintf(label, sizeof(label), "%.*s", (int)sizeof(label) - 1, info->base_id);
	if (!label[0])
		return cow_store_error(s, -EINVAL,
				       "the store records no base label (%s, made without --base-id): --base-id cannot be checked",
				       p->name);
	if (strcmp(label, s->base_id))
		return cow_store_error(s, -EINVAL, "the store was made over the base labelled '%s', not '%s'",
				       label, s->base_id);
	return 0;
}

/* store_match_base_id() for a store whose header was not read yet. */
static int check_base_id(const struct cow_plugin *p, struct cow_store *s)
{
	size_t len = s->cow_size < INSPECT_BYTES ? (size_t)s->cow_size : INSPECT_BYTES;
	struct cow_store_info info;
	unsigned char *head;
	int r;

	if (!s->base_id || !*s->base_id || !COW_PLUGIN_HAS(p, inspect))
		return store_match_base_id(p, s, NULL);
	head = calloc(1, INSPECT_BYTES);
	if (!head)
		return -ENOMEM;
	memset(&info, 0, sizeof(info));
	r = pread_full(s->cow_fd, head, len, 0);
	if (r)
		cow_store_error(s, r, "cannot read the store: %s", strerror(-r));
	else
		r = p->inspect(head, len, &info);
	free(head);
	if (r)
		return s->error[0] ? r : cow_store_error(s, r, "cannot read the store's header");
	return store_match_base_id(p, s, &info);
}

int store_open(const struct plugin_set *set, struct cow_store *s, const char *format,
	       const struct cow_plugin **plugin, int *created)
{
	unsigned char head[COW_BLANK_BYTES];
	const struct cow_plugin *p = NULL;
	size_t len = sizeof(head);
	int r;

	*created = 0;
	if (s->cow_size < len)
		len = (size_t)s->cow_size;
	memset(head, 0, sizeof(head));
	r = len ? pread_full(s->cow_fd, head, len, 0) : 0;
	if (r)
		return cow_store_error(s, r, "cannot read the store: %s", strerror(-r));

	if (buf_is_zero(head, sizeof(head))) {
		const char *want = format ? format : COW_DEFAULT_FORMAT;

		p = plugins_find(set, want);
		if (!p)
			return cow_store_error(s, -ENOENT, "no plugin for format '%s' in %s", want,
					       set->dir);
		r = p->create(s);
		if (r)
			return r;
		*created = 1;
	} else {
		p = plugins_probe(set, head, len);
		if (!p)
			return cow_store_error(s, -EINVAL,
					       "unknown store format (not blank, and no plugin in %s recognises it)",
					       set->dir);
		if (format && strcmp(format, p->name))
			return cow_store_error(s, -EINVAL, "the store is in %s format, not %s", p->name,
					       format);
	}
	r = p->open(s);
	if (r)
		return r;
	r = check_base_id(p, s);
	if (r) {
		p->close(s);
		return r;
	}
	*plugin = p;
	return 0;
}
