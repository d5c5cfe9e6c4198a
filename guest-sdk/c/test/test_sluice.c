/* test_sluice.c: tests of the C helper, run natively:
 *   cc -std=c11 -Wall -I guest-sdk/c guest-sdk/c/test/test_sluice.c guest-sdk/c/sluice.c -o /tmp/t && /tmp/t
 * Prints "N passed, N failed". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice.h"

static int passed, failed;
#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (cond)                                                                                      \
      passed++;                                                                                    \
    else {                                                                                         \
      failed++;                                                                                    \
      fprintf(stderr, "%s:%d: failed: %s\n", __FILE__, __LINE__, #cond);                           \
    }                                                                                              \
  } while (0)

static uint8_t data[4096];
static uint32_t idx[13 * 16];
static size_t dn, nev;

static uint32_t put(const void *p, size_t n) {
  uint32_t at = (uint32_t)dn;
  memcpy(data + dn, p, n);
  dn += n;
  return at;
}

static void put32(uint32_t v) {
  uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
  put(b, 4);
}

/* Appends an event; headers is "name=value;name=value" or NULL. */
static void add(const char *key, const char *body, const char *headers, int64_t offset, int64_t ts) {
  uint32_t *w = idx + 13 * nev++;
  if (key) {
    w[0] = put(key, strlen(key));
    w[1] = (uint32_t)strlen(key);
  } else {
    w[0] = 0;
    w[1] = SLUICE_NO_KEY;
  }
  w[2] = put(body, strlen(body));
  w[3] = (uint32_t)strlen(body);
  w[4] = (uint32_t)dn;
  for (const char *h = headers; h && *h;) {
    const char *eq = strchr(h, '='), *end = strchr(h, ';');
    if (!end)
      end = h + strlen(h);
    put32((uint32_t)(eq - h));
    put(h, (size_t)(eq - h));
    put32((uint32_t)(end - eq - 1));
    put(eq + 1, (size_t)(end - eq - 1));
    h = *end ? end + 1 : end;
  }
  w[5] = (uint32_t)dn - w[4];
  w[6] = put("t", 1);
  w[7] = 1;
  w[8] = 3;
  w[9] = (uint32_t)(uint64_t)offset;
  w[10] = (uint32_t)((uint64_t)offset >> 32);
  w[11] = (uint32_t)(uint64_t)ts;
  w[12] = (uint32_t)((uint64_t)ts >> 32);
}

static int eq(sluice_bytes b, const char *s) { return sluice_bytes_eq(b, s); }

int main(void) {
  add("k", "hello", "a=1;b=2;a=3", 1LL << 40, 1700000000000LL);
  add(NULL, "drop me", NULL, 1, SLUICE_NO_TIMESTAMP);
  add(NULL, "route", "x=1", 2, 5);
  add(NULL, "bad", NULL, 3, 5);
  sluice_batch b = {data, dn, idx, nev * 13};

  /* reading */
  CHECK(sluice_batch_len(&b) == 4);
  sluice_event e = sluice_batch_event(&b, 0);
  sluice_bytes v;
  CHECK(sluice_event_key(&e, &v) && eq(v, "k"));
  CHECK(eq(sluice_event_body(&e), "hello"));
  CHECK(eq(sluice_event_topic(&e), "t"));
  CHECK(sluice_event_partition(&e) == 3);
  CHECK(sluice_event_offset(&e) == 1LL << 40);
  CHECK(sluice_event_timestamp(&e) == 1700000000000LL);
  CHECK(sluice_event_header(&e, "a", &v) && eq(v, "1"));
  CHECK(!sluice_event_header(&e, "zz", &v));
  sluice_header_iter it = sluice_event_headers(&e);
  sluice_bytes hn, hv;
  int n = 0;
  while (sluice_header_next(&it, &hn, &hv))
    n++;
  CHECK(n == 3);
  sluice_event e1 = sluice_batch_event(&b, 1);
  CHECK(!sluice_event_key(&e1, &v));
  CHECK(sluice_event_timestamp(&e1) == SLUICE_NO_TIMESTAMP);

  /* building */
  sluice_result r;
  sluice_result_init(&r, &b);
  sluice_draft d;
  sluice_draft_init(&d, &e);
  sluice_draft_set_body(&d, (const uint8_t *)"HELLO", 5);
  sluice_draft_set_header(&d, "a", (const uint8_t *)"new", 3);
  sluice_draft_set_header(&d, "c", (const uint8_t *)"added", 5);
  CHECK(sluice_draft_remove_header(&d, "b"));
  CHECK(!sluice_draft_remove_header(&d, "b"));
  sluice_draft_clear_key(&d);
  sluice_draft_set_timestamp(&d, 11);
  sluice_result_modify(&r, &d);
  sluice_draft_free(&d);
  sluice_result_drop(&r);
  sluice_event e2 = sluice_batch_event(&b, 2);
  sluice_draft_init(&d, &e2);
  sluice_draft_set_key(&d, (const uint8_t *)"kk", 2);
  sluice_result_route_to(&r, "audit", &d);
  sluice_draft_free(&d);
  sluice_result_dead_letter(&r, "bad body");

  uint32_t want[] = {SLUICE_MODIFY, 0, 0, SLUICE_DROP, 0, SLUICE_NO_REPLACEMENT,
                     SLUICE_ROUTE_TO, 0, 1, SLUICE_DEAD_LETTER, 1, SLUICE_NO_REPLACEMENT};
  CHECK(r.n_outcomes == 12 && memcmp(r.outcomes, want, sizeof want) == 0);
  CHECK(r.n_labels == 2 && eq(r.labels[0], "audit") && eq(r.labels[1], "bad body"));
  sluice_batch rep = {r.data, r.data_len, r.index, r.index_len};
  CHECK(sluice_batch_len(&rep) == 2);
  sluice_event r0 = sluice_batch_event(&rep, 0);
  CHECK(!sluice_event_key(&r0, &v));
  CHECK(eq(sluice_event_body(&r0), "HELLO"));
  CHECK(sluice_event_offset(&r0) == 1LL << 40 && sluice_event_timestamp(&r0) == 11);
  it = sluice_event_headers(&r0);
  const char *hw[] = {"a", "new", "c", "added"};
  n = 0;
  while (sluice_header_next(&it, &hn, &hv)) {
    CHECK(n < 2 && eq(hn, hw[2 * n]) && eq(hv, hw[2 * n + 1]));
    n++;
  }
  CHECK(n == 2);
  sluice_event r1 = sluice_batch_event(&rep, 1);
  CHECK(sluice_event_key(&r1, &v) && eq(v, "kk"));
  CHECK(sluice_event_header(&r1, "x", &v) && eq(v, "1"));
  CHECK(eq(sluice_event_body(&r1), "route") && sluice_event_offset(&r1) == 2);
  sluice_result_free(&r);

  /* a malformed index reads as empty */
  idx[3] = 100000;
  CHECK(sluice_event_body(&e).len == 0);

  printf("%d passed, %d failed\n", passed, failed);
  return failed != 0;
}
