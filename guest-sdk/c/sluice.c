/* sluice.c: C helper for Sluice plugins; see sluice.h.
 * Build: compiled together with the plugin by its build.sh
 * (clang-19 --target=wasm32-wasi --sysroot=/usr -mexec-model=reactor). */
#include "sluice.h"

#include <stdlib.h>
#include <string.h>

static void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q)
    abort();
  return q;
}

static uint32_t rd32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- reading ---------------------------------------------------------- */

size_t sluice_batch_len(const sluice_batch *b) { return b->index_len / SLUICE_STRIDE; }

sluice_event sluice_batch_event(const sluice_batch *b, size_t i) {
  sluice_event e = {b, b->index + i * SLUICE_STRIDE};
  return e;
}

static sluice_bytes slice(const sluice_event *e, uint32_t off, uint32_t len) {
  sluice_bytes s = {NULL, 0};
  size_t n = e->batch->data_len;
  if (off > n || len > n - off)
    return s;
  s.ptr = e->batch->data + off;
  s.len = len;
  return s;
}

int sluice_event_key(const sluice_event *e, sluice_bytes *out) {
  if (e->w[1] == SLUICE_NO_KEY) {
    out->ptr = NULL;
    out->len = 0;
    return 0;
  }
  *out = slice(e, e->w[0], e->w[1]);
  return 1;
}

sluice_bytes sluice_event_body(const sluice_event *e) { return slice(e, e->w[2], e->w[3]); }
sluice_bytes sluice_event_header_block(const sluice_event *e) { return slice(e, e->w[4], e->w[5]); }
sluice_bytes sluice_event_topic(const sluice_event *e) { return slice(e, e->w[6], e->w[7]); }
int32_t sluice_event_partition(const sluice_event *e) { return (int32_t)e->w[8]; }
int64_t sluice_event_offset(const sluice_event *e) {
  return (int64_t)((uint64_t)e->w[9] | (uint64_t)e->w[10] << 32);
}
int64_t sluice_event_timestamp(const sluice_event *e) {
  return (int64_t)((uint64_t)e->w[11] | (uint64_t)e->w[12] << 32);
}

sluice_header_iter sluice_event_headers(const sluice_event *e) {
  sluice_bytes block = sluice_event_header_block(e);
  sluice_header_iter it = {block.ptr, block.ptr + block.len};
  return it;
}

int sluice_header_next(sluice_header_iter *it, sluice_bytes *name, sluice_bytes *value) {
  size_t left = (size_t)(it->end - it->p);
  if (!it->p || left < 4)
    return 0;
  uint32_t n = rd32(it->p);
  if (n > left - 4 || left - 4 - n < 4)
    return 0;
  name->ptr = it->p + 4;
  name->len = n;
  const uint8_t *q = it->p + 4 + n;
  left = (size_t)(it->end - q);
  uint32_t v = rd32(q);
  if (v > left - 4)
    return 0;
  value->ptr = q + 4;
  value->len = v;
  it->p = q + 4 + v;
  return 1;
}

static int bytes_eq_n(sluice_bytes b, const char *s, size_t n) {
  return b.len == n && (n == 0 || memcmp(b.ptr, s, n) == 0);
}

int sluice_bytes_eq(sluice_bytes b, const char *s) { return bytes_eq_n(b, s, strlen(s)); }

int sluice_event_header(const sluice_event *e, const char *name, sluice_bytes *value) {
  size_t n = strlen(name);
  sluice_header_iter it = sluice_event_headers(e);
  sluice_bytes hn, hv;
  while (sluice_header_next(&it, &hn, &hv)) {
    if (bytes_eq_n(hn, name, n)) {
      *value = hv;
      return 1;
    }
  }
  return 0;
}

/* ---- drafts ----------------------------------------------------------- */

void sluice_draft_init(sluice_draft *d, const sluice_event *orig) {
  memset(d, 0, sizeof *d);
  d->orig = *orig;
  d->has_key = sluice_event_key(orig, &d->key);
  d->body = sluice_event_body(orig);
  d->timestamp = sluice_event_timestamp(orig);
}

void sluice_draft_set_body(sluice_draft *d, const uint8_t *body, size_t len) {
  d->body.ptr = body;
  d->body.len = len;
}

void sluice_draft_set_key(sluice_draft *d, const uint8_t *key, size_t len) {
  d->has_key = 1;
  d->key.ptr = key;
  d->key.len = len;
}

void sluice_draft_clear_key(sluice_draft *d) {
  d->has_key = 0;
  d->key.ptr = NULL;
  d->key.len = 0;
}

void sluice_draft_set_timestamp(sluice_draft *d, int64_t millis) { d->timestamp = millis; }

static void draft_own_headers(sluice_draft *d) {
  if (d->headers)
    return;
  d->cap_headers = 4;
  d->headers = xrealloc(NULL, d->cap_headers * sizeof *d->headers);
  sluice_header_iter it = sluice_event_headers(&d->orig);
  sluice_header h;
  while (sluice_header_next(&it, &h.name, &h.value)) {
    if (d->n_headers == d->cap_headers) {
      d->cap_headers *= 2;
      d->headers = xrealloc(d->headers, d->cap_headers * sizeof *d->headers);
    }
    d->headers[d->n_headers++] = h;
  }
}

void sluice_draft_set_header(sluice_draft *d, const char *name, const uint8_t *value, size_t len) {
  draft_own_headers(d);
  size_t n = strlen(name), out = 0;
  int found = 0;
  for (size_t i = 0; i < d->n_headers; i++) {
    if (bytes_eq_n(d->headers[i].name, name, n)) {
      if (found)
        continue; /* later duplicates go */
      found = 1;
      d->headers[i].value.ptr = value;
      d->headers[i].value.len = len;
    }
    d->headers[out++] = d->headers[i];
  }
  d->n_headers = out;
  if (!found) {
    if (d->n_headers == d->cap_headers) {
      d->cap_headers *= 2;
      d->headers = xrealloc(d->headers, d->cap_headers * sizeof *d->headers);
    }
    sluice_header h = {{(const uint8_t *)name, n}, {value, len}};
    d->headers[d->n_headers++] = h;
  }
}

int sluice_draft_remove_header(sluice_draft *d, const char *name) {
  draft_own_headers(d);
  size_t n = strlen(name), out = 0;
  for (size_t i = 0; i < d->n_headers; i++)
    if (!bytes_eq_n(d->headers[i].name, name, n))
      d->headers[out++] = d->headers[i];
  int removed = out != d->n_headers;
  d->n_headers = out;
  return removed;
}

void sluice_draft_free(sluice_draft *d) {
  free(d->headers);
  d->headers = NULL;
  d->n_headers = d->cap_headers = 0;
}

/* ---- result ----------------------------------------------------------- */

void sluice_result_init(sluice_result *r, const sluice_batch *b) {
  size_t events = sluice_batch_len(b);
  memset(r, 0, sizeof *r);
  r->input_data = b->data_len;
  r->input_events = events;
  r->cap_outcomes = events * SLUICE_OUTCOME_STRIDE;
  r->outcomes = xrealloc(NULL, r->cap_outcomes * sizeof *r->outcomes);
}

void sluice_result_free(sluice_result *r) {
  free(r->outcomes);
  free(r->data);
  free(r->index);
  for (size_t i = 0; i < r->n_labels; i++)
    free((void *)r->labels[i].ptr);
  free(r->labels);
  memset(r, 0, sizeof *r);
}

static void push_outcome(sluice_result *r, uint32_t kind, uint32_t label, uint32_t rep) {
  if (r->n_outcomes + 3 > r->cap_outcomes) {
    r->cap_outcomes = r->cap_outcomes * 2 + 3;
    r->outcomes = xrealloc(r->outcomes, r->cap_outcomes * sizeof *r->outcomes);
  }
  uint32_t *o = r->outcomes + r->n_outcomes;
  o[0] = kind;
  o[1] = label;
  o[2] = rep;
  r->n_outcomes += 3;
}

static void reserve_data(sluice_result *r, size_t more) {
  if (r->data_len + more > r->data_cap) {
    size_t cap = r->data_cap * 2;
    if (cap < r->data_len + more)
      cap = r->data_len + more + 256;
    r->data = xrealloc(r->data, cap);
    r->data_cap = cap;
  }
}

static uint32_t append(sluice_result *r, const void *p, size_t n) {
  reserve_data(r, n);
  uint32_t at = (uint32_t)r->data_len;
  if (n)
    memcpy(r->data + at, p, n);
  r->data_len += n;
  return at;
}

static void append32(sluice_result *r, uint32_t v) {
  uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
  append(r, b, 4);
}

/* Appends the draft to the replacements; returns its index there. */
static uint32_t push_replacement(sluice_result *r, const sluice_draft *d) {
  uint32_t w[SLUICE_STRIDE];
  if (!r->data) {
    /* First replacement: room for as much as the input holds, so a batch whose
     * events are all replaced does not grow (and copy) its buffers over and over. */
    r->data_cap = r->input_data + 64;
    r->data = xrealloc(NULL, r->data_cap);
    r->index_cap = (r->input_events ? r->input_events : 1) * SLUICE_STRIDE;
    r->index = xrealloc(r->index, r->index_cap * sizeof *r->index);
  }
  if (d->has_key) {
    w[0] = append(r, d->key.ptr, d->key.len);
    w[1] = (uint32_t)d->key.len;
  } else {
    w[0] = 0;
    w[1] = SLUICE_NO_KEY;
  }
  w[2] = append(r, d->body.ptr, d->body.len);
  w[3] = (uint32_t)d->body.len;
  if (!d->headers) {
    sluice_bytes block = sluice_event_header_block(&d->orig);
    w[4] = append(r, block.ptr, block.len);
    w[5] = (uint32_t)block.len;
  } else {
    w[4] = (uint32_t)r->data_len;
    for (size_t i = 0; i < d->n_headers; i++) {
      append32(r, (uint32_t)d->headers[i].name.len);
      append(r, d->headers[i].name.ptr, d->headers[i].name.len);
      append32(r, (uint32_t)d->headers[i].value.len);
      append(r, d->headers[i].value.ptr, d->headers[i].value.len);
    }
    w[5] = (uint32_t)r->data_len - w[4];
  }
  sluice_bytes topic = sluice_event_topic(&d->orig);
  w[6] = append(r, topic.ptr, topic.len);
  w[7] = (uint32_t)topic.len;
  for (int i = 8; i <= 10; i++)
    w[i] = d->orig.w[i];
  w[11] = (uint32_t)(uint64_t)d->timestamp;
  w[12] = (uint32_t)((uint64_t)d->timestamp >> 32);
  if (r->index_len + SLUICE_STRIDE > r->index_cap) {
    r->index_cap = r->index_cap * 2 + SLUICE_STRIDE * 16;
    r->index = xrealloc(r->index, r->index_cap * sizeof *r->index);
  }
  memcpy(r->index + r->index_len, w, sizeof w);
  r->index_len += SLUICE_STRIDE;
  return (uint32_t)(r->index_len / SLUICE_STRIDE - 1);
}

static uint32_t intern(sluice_result *r, const char *label) {
  size_t n = strlen(label);
  for (size_t i = 0; i < r->n_labels; i++)
    if (bytes_eq_n(r->labels[i], label, n))
      return (uint32_t)i;
  if (r->n_labels == r->cap_labels) {
    r->cap_labels = r->cap_labels * 2 + 4;
    r->labels = xrealloc(r->labels, r->cap_labels * sizeof *r->labels);
  }
  r->labels[r->n_labels] = sluice_strdup_bytes(label);
  return (uint32_t)r->n_labels++;
}

void sluice_result_keep(sluice_result *r) { push_outcome(r, SLUICE_KEEP, 0, SLUICE_NO_REPLACEMENT); }
void sluice_result_drop(sluice_result *r) { push_outcome(r, SLUICE_DROP, 0, SLUICE_NO_REPLACEMENT); }

void sluice_result_modify(sluice_result *r, const sluice_draft *d) {
  push_outcome(r, SLUICE_MODIFY, 0, push_replacement(r, d));
}

void sluice_result_route_to(sluice_result *r, const char *label, const sluice_draft *d) {
  uint32_t l = intern(r, label);
  push_outcome(r, SLUICE_ROUTE_TO, l, d ? push_replacement(r, d) : SLUICE_NO_REPLACEMENT);
}

void sluice_result_dead_letter(sluice_result *r, const char *reason) {
  push_outcome(r, SLUICE_DEAD_LETTER, intern(r, reason), SLUICE_NO_REPLACEMENT);
}

sluice_bytes sluice_strdup_bytes(const char *s) {
  size_t n = strlen(s);
  sluice_bytes b = {NULL, 0};
  if (n == 0) /* nothing to free: post-return frees only non-empty strings */
    return b;
  uint8_t *p = xrealloc(NULL, n);
  memcpy(p, s, n);
  b.ptr = p;
  b.len = n;
  return b;
}

void sluice_result_trim(sluice_result *r) {
  if (r->n_outcomes == 0) {
    free(r->outcomes);
    r->outcomes = NULL;
  }
  if (r->data_len == 0) {
    free(r->data);
    r->data = NULL;
  }
  if (r->index_len == 0) {
    free(r->index);
    r->index = NULL;
  }
  if (r->n_labels == 0) {
    free(r->labels);
    r->labels = NULL;
  }
}
