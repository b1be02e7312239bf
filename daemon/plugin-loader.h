/* SPDX-License-Identifier: GPL-2.0-only */
/* Loading store-format plugins and choosing one for a store. */
#ifndef COW_PLUGIN_LOADER_H
#define COW_PLUGIN_LOADER_H

#include "cow-plugin.h"

#define COW_MAX_PLUGINS 32
/* Blank devices get the packed format; cowctl makes new files UML COW. */
#define COW_DEFAULT_FORMAT "packed"
#define COW_DEFAULT_FILE_FORMAT "uml"
/* A store whose first COW_BLANK_BYTES are zero is blank: it may be formatted. */
#define COW_BLANK_BYTES 4096

struct plugin_set {
	const struct cow_plugin *plugin[COW_MAX_PLUGINS];
	void *handle[COW_MAX_PLUGINS];
	int n;
	char dir[4096];
};

/* Load every *.so in @dir (NULL: $COWD_PLUGIN_DIR, the build tree, or the
 * installed directory).  Returns the number loaded or a negative errno. */
int plugins_load(struct plugin_set *set, const char *dir);
void plugins_unload(struct plugin_set *set);
const struct cow_plugin *plugins_find(const struct plugin_set *set, const char *name);
/* The plugin whose probe() recognises @head (a store's first @len bytes), or NULL. */
const struct cow_plugin *plugins_probe(const struct plugin_set *set, const void *head, size_t len);

/*
 * Open the store on s->cow_fd: probe its format, or create it with
 * @format (or the default) when it is blank.  On success *plugin is the
 * store's plugin and the store is open.  On failure s->error says why.
 */
int store_open(const struct plugin_set *set, struct cow_store *s, const char *format,
	       const struct cow_plugin **plugin, int *created);

/*
 * If the user labelled the base (s->base_id), the store @p opened must
 * have recorded that label, as inspect() put it in @info (unused when
 * there is no label to check or @p has no inspect()): 0, or an error in
 * s->error.  store_open() checks it itself.
 */
int store_match_base_id(const struct cow_plugin *p, struct cow_store *s,
			const struct cow_store_info *info);


#endif
