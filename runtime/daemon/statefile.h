/*
 * statefile.h — the file of unfinished requests that lets them survive a
 * restart of pinferd (graceful drain, issue 7).
 *
 * On SIGTERM the daemon drains, exports every unfinished sequence from the
 * engine (pf_engine_export), attaches who owns it and writes them here with
 * pf_state_write(); on start it reads them back with pf_state_read() and
 * resumes them (pf_engine_resume).  The file holds what the engine needs to
 * continue exactly where it stopped — prompt, tokens generated so far, every
 * request and sampling parameter, and each sequence's Philox key (with the
 * number of generated tokens that is the whole random state, because the
 * sampler draws token i from philox(key, counter = i)) — and what the daemon
 * needs to hand the stream back to the right client: uid, a random 128-bit
 * resume token and the client's tag.
 *
 * The file is hostile input.  It may be truncated (a crash while writing on a
 * file system that ignores our fsyncs), bit-flipped, written by another
 * version or for another model, or crafted.  pf_state_parse() checks, in
 * this order, and stops at the first problem with a negative errno and a
 * message naming it:
 *   magic            -EBADMSG  "not a pinfer state file"
 *   header length    -EBADMSG  "truncated: 20 of at least 64 bytes"
 *   version          -EPROTONOSUPPORT "format version 3, this pinferd reads 1"
 *   total length     -EBADMSG  "truncated: 812 of 1040 bytes" / trailing bytes
 *   checksum         -EBADMSG  "checksum mismatch"
 *   model            -ESTALE   "made with another model"
 *   records          -EBADMSG  every count and length bounded by the bytes
 *                              that remain, every value range-checked
 * Nothing is allocated before the counts are known to fit the file, so an
 * absurd count costs nothing.  The daemon should quarantine the file on any
 * error except -ENOENT (no file: a normal start) and start clean.
 *
 * Format, version 1.  Little-endian, fixed widths, no padding, floats as
 * their IEEE-754 bits; written field by field, never as memory images.
 *
 *   header (64 bytes)
 *     0  u8[8] magic "PFSTATE\0"
 *     8  u64   checksum: XXH3_64bits of bytes [16, total_len)
 *    16  u32   version (1)
 *    20  u32   header_len (64)
 *    24  u64   total_len: the file's size in bytes
 *    32  u64   model fingerprint (caller-defined, see pf_engine_model_fingerprint)
 *    40  u32   n_records
 *    44  u32   flags (0)
 *    48  u64   created: unix seconds (informational)
 *    56  u64   reserved (0)
 *   n_records records, each
 *     u32 rec_len: bytes of the record after this field
 *     u32 uid; u8[16] resume token; u64 tag; u64 seed (this sequence's
 *     Philox key); i32 index; i32 n_prompt (>= 1); i32 n_generated (>= 0);
 *     u32 flags (0)
 *     request:  i32 n; i32 beam_width; f32 length_penalty; i32 priority
 *     sampling: f32 temperature; i32 top_k; f32 top_p; f32 min_p;
 *               f32 repetition_penalty; f32 presence_penalty;
 *               f32 frequency_penalty; u64 seed; u32 bits (1 has_seed,
 *               2 ignore_eos, 4 logprobs); i32 top_logprobs; i32 max_tokens;
 *               i32 min_tokens; u32 n_stop_ids; i32 stop_ids[n_stop_ids];
 *               u32 n_stop_strings; n_stop_strings × (u32 len; u8 bytes[len])
 *     i32 prompt[n_prompt]; i32 generated[n_generated]
 *     when logprobs: n_generated × (f32 logprob; top_logprobs × (i32 token,
 *               f32 logprob)), unused alternatives as token -1
 *   A record must consume exactly rec_len bytes.
 *
 * Durability: pf_state_write() writes a temporary file beside the target,
 * fsyncs it, renames it over the target and fsyncs the directory, so a
 * reader sees the old file or the new one, never a mixture; on failure the
 * temporary file is removed and the old file is untouched.
 */
#ifndef PF_STATEFILE_H
#define PF_STATEFILE_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/engine/engine.h"

#define PF_STATE_VERSION      1
#define PF_STATE_HEADER_LEN   64
#define PF_STATE_MAX_FILE     (1ULL << 30) /* bytes; a larger file is refused, not read */
#define PF_STATE_MAX_RECORDS  (1 << 20)
#define PF_STATE_MAX_TOKENS   (1 << 24)    /* per prompt or generated array */

/*
 * One unfinished sequence and its owner.  seq's pointers are borrowed when
 * writing; in records returned by pf_state_read()/pf_state_parse() they
 * point into the same allocation as the array itself, and seq.user is NULL.
 */
struct pf_state_record {
	uint32_t uid;              /* the client's uid, from SO_PEERCRED */
	uint8_t resume_token[16];  /* random, issued by the daemon */
	uint64_t tag;              /* the client's tag of the request */
	struct pf_engine_snapshot seq;
};

/*
 * Serialize n records (n may be 0) for a model with fingerprint model_fp
 * into a new buffer (*ret_buf, free() it; *ret_len bytes).  Returns 0,
 * -EINVAL with a message when a record could not be read back (counts out
 * of range, n_prompt < 1, logprobs requested but missing, more than
 * PF_STATE_MAX_RECORDS), -ENOMEM.
 */
int pf_state_encode(const struct pf_state_record *recs, size_t n, uint64_t model_fp, void **ret_buf,
		    size_t *ret_len, char *err, size_t errlen);

/*
 * Parse and check a whole state file image buf[0..len) (see the order of
 * checks above).  On success returns 0, *ret_recs (free with
 * pf_state_records_free; NULL when *ret_n is 0) and *ret_n.  On failure
 * returns -EBADMSG, -EPROTONOSUPPORT, -ESTALE or -ENOMEM with a one-line
 * message in err (err may be NULL when errlen is 0), and leaves the outputs
 * NULL / 0.  Never reads outside buf.
 */
int pf_state_parse(const void *buf, size_t len, uint64_t model_fp, struct pf_state_record **ret_recs,
		   size_t *ret_n, char *err, size_t errlen);

/*
 * Atomically replace the file at path with these records (see Durability).
 * The file is created mode 0600: it holds users' prompts.  Returns 0, or a
 * negative errno with a message naming the step that failed (-EINVAL and
 * -ENOMEM as pf_state_encode, or the errno of open, write, fsync, rename).
 * If only the final directory fsync fails the new file is in place but its
 * durability is not assured; that is reported as an error too.
 */
int pf_state_write(const char *path, const struct pf_state_record *recs, size_t n, uint64_t model_fp, char *err,
		   size_t errlen);

/*
 * Read and parse the file at path.  Returns 0 and the records as
 * pf_state_parse, -ENOENT when there is no file (err is then empty), the
 * errno of open/read for I/O problems (-ELOOP for a symbolic link: the
 * daemon may run privileged and the file is never followed), -EBADMSG when
 * it is not a regular file or larger than PF_STATE_MAX_FILE, else as
 * pf_state_parse.  The message starts with the path.
 */
int pf_state_read(const char *path, uint64_t model_fp, struct pf_state_record **ret_recs, size_t *ret_n,
		  char *err, size_t errlen);

/*
 * Move a bad state file aside so it is kept for inspection and not loaded
 * again: to "<path>.corrupt-<unix seconds>" (with "-1", "-2"… appended when
 * that name is taken; an earlier quarantined file is never overwritten), then
 * fsync the directory.  Writes the new name to ret_path (may be NULL when
 * cap is 0).  Returns 0, -ENOENT when path does not exist, -ENAMETOOLONG, or
 * the errno of rename.
 */
int pf_state_quarantine(const char *path, char *ret_path, size_t cap);

/* Delete the state file once its requests are resumed (so a later crash
 * does not resume them twice) and fsync the directory.  Returns 0 (also
 * when there was no file) or the errno of unlink. */
int pf_state_remove(const char *path);

/* Free what pf_state_parse/pf_state_read returned.  Accepts NULL. */
void pf_state_records_free(struct pf_state_record *recs);

#endif /* PF_STATEFILE_H */
