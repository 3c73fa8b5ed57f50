/*
 * filters.c - the registered filters, in the order the chain runs them
 *
 * Cheap structural checks first (guard), then content rules. A new filter
 * is one file in filters/ exporting its ops, plus one line here.
 */
#include "config.h"

extern const struct xm_filter_ops guard_filter;
extern const struct xm_filter_ops rules_filter;
/* issue 3: file-transfer policy */
extern const struct xm_filter_ops transfer_filter;
extern const struct xm_filter_ops oobfetch_filter;
extern const struct xm_filter_ops antivirus_filter;
extern const struct xm_filter_ops ratelimit_filter;
extern const struct xm_filter_ops links_filter;
extern const struct xm_filter_ops dnsbl_filter;

const struct xm_filter_ops *const xm_filters[] = {
	&guard_filter,
	&rules_filter,
	&transfer_filter,
	&oobfetch_filter,
	&antivirus_filter,
	&ratelimit_filter,
	&links_filter,
	&dnsbl_filter,
};
const size_t xm_nfilters = XM_ARRAY_LEN(xm_filters);
