// The mail queue on disk (DESIGN §3): queue ids, spool folders, the queue
// file (typed length-prefixed records ending in END) and the per-message
// recipient status log that qmgr appends to instead of rewriting the file.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/result.hpp"
#include "libmail/unique_fd.hpp"

namespace facteur::queue {

// ---------------------------------------------------------------------------
// Queue ids: 18 characters of [0-9A-V] (base 32): 11 for the arrival time in
// microseconds since the epoch, 5 for the process id, 2 for a per-process
// counter within the same microsecond. Unique on one host, sortable by
// arrival time, filename-safe.
inline constexpr size_t kQueueIdLength = 18;
std::string new_queue_id();
bool valid_queue_id(std::string_view id);
// Arrival time (Unix seconds) encoded in an id; 0 for an invalid id.
int64_t queue_id_time(std::string_view id);

// ---------------------------------------------------------------------------
// Spool folders. deferred/ is hashed one level by the id's last character.
enum class Folder { tmp, incoming, active, deferred, hold, corrupt, maildrop, log };
std::string_view folder_name(Folder folder);
std::optional<Folder> folder_from_name(std::string_view name);

class Spool {
public:
    explicit Spool(std::string root) : root_(std::move(root)) {}
    const std::string& root() const { return root_; }
    // The folder itself (deferred: the top folder).
    std::string folder_path(Folder folder) const;
    // Where the queue file `id` lives in `folder` (deferred: hashed subfolder).
    std::string file_path(Folder folder, std::string_view id) const;
    // The status log of `id` (always log/<id>, whatever folder the file is in).
    std::string log_path(std::string_view id) const { return file_path(Folder::log, id); }
    // Creates every folder (and deferred's subfolders) if missing, mode 0750
    // except maildrop (1733: any local user may drop a file, none may list).
    Status create_folders() const;
    // Queue ids of the files in a folder (deferred: all subfolders), sorted
    // (= by arrival). Names that are not queue ids are skipped.
    Result<std::vector<std::string>> list(Folder folder) const;
    // Which folder holds `id` now (checks incoming, active, deferred, hold,
    // maildrop, corrupt).
    std::optional<Folder> locate(std::string_view id) const;
    // rename(2) between folders, then fsync both directories.
    Status move(std::string_view id, Folder from, Folder to) const;

private:
    std::string root_;
};

// ---------------------------------------------------------------------------
// DSN parameters (RFC 3461).
enum Notify : unsigned {
    notify_default = 0,  // none given: FAILURE and DELAY (RFC 3461 §4.1)
    notify_never = 1,
    notify_success = 2,
    notify_failure = 4,
    notify_delay = 8,
};
enum class Ret { unspecified, full, headers };
enum class BodyType { seven_bit, eight_bit_mime, binary_mime };

struct Recipient {
    // The RCPT TO mailbox, as received (no angle brackets). In files qmgr
    // writes for an alias expansion it may also be a "|command" target;
    // qmgr refuses such recipients in maildrop files.
    std::string address;
    std::string orcpt;     // ORCPT as "addr-type;xtext-decoded address", or empty
    unsigned notify = notify_default;
};

struct Envelope {
    std::string queue_id;
    std::string sender;  // empty = the null reverse-path <>
    std::vector<Recipient> recipients;
    std::string envid;  // ENVID, xtext-decoded, or empty
    Ret ret = Ret::unspecified;
    BodyType body = BodyType::seven_bit;
    bool smtputf8 = false;
    int64_t arrival_time = 0;  // Unix seconds
    // Trace information (for logs, Received headers, bounces).
    std::string client_address;  // "127.0.0.1", or "local" for sendmail
    std::string client_helo;
    std::string protocol;   // ESMTP, ESMTPS, ESMTPSA, SMTP, local
    std::string auth_user;  // authenticated SMTP user or local login name
    int64_t submitter_uid = -1;  // maildrop files: the uid that wrote it
    uint64_t message_size = 0;   // bytes of message data (filled by the writer)
    // Alias expansion generations this message went through: qmgr writes the
    // targets of an alias into a new queue file one generation deeper, and
    // refuses to go on past a limit (a loop through subaddresses or remote
    // forwarding that the directory could not see).
    int expansion_depth = 0;
};

// ---------------------------------------------------------------------------
// Queue file format. A file is a sequence of records:
//   1 byte type, 4 bytes big-endian length L, L bytes of data.
// Types, in this order (the envelope comes last because its size field is
// known only when the message has been received):
//   'V' format version ("1")
//   'M' message data, zero or more records of at most kMaxChunk bytes each
//   'E' the envelope: one encoded ipc frame (libmail/ipc.hpp: binary-safe
//       name/value attributes); each "rcpt" attribute holds a nested encoded
//       frame (address, orcpt, notify)
//   'Z' end: 8 bytes big-endian total message size; nothing may follow
// Anything else (unknown type, bad length, missing Z, trailing bytes) makes
// the file corrupt.
inline constexpr size_t kMaxChunk = 1 << 20;
inline constexpr size_t kMaxEnvelopeRecord = 8 << 20;

// Pure encoders/decoders, for tests and fuzzing.
std::string encode_envelope(const Envelope& envelope);
Result<Envelope> decode_envelope(std::string_view data);

// Writes one queue file: create() in tmp/ (mode 0640), append() message
// bytes as they arrive (buffered, written in chunks), then commit(): END
// record, fsync, rename into `destination` (incoming/ or maildrop/),
// fsync of the directory. Only after commit() returned success is the
// message the server's responsibility (DESIGN §3). Destroying an uncommitted
// writer removes the tmp file.
class Writer {
public:
    // The envelope is written at commit (message_size filled in then); its
    // queue_id must be set (new_queue_id()) and is the file name.
    static Result<Writer> create(const Spool& spool, Folder destination, std::string queue_id, mode_t mode = 0640);
    Writer(Writer&& other) noexcept;
    Writer& operator=(Writer&& other) noexcept;
    Writer(const Writer&) = delete;
    Writer& operator=(const Writer&) = delete;
    ~Writer();

    const std::string& queue_id() const { return queue_id_; }
    Status append(std::string_view data);
    uint64_t size() const { return size_; }
    // Blocking (fsync): daemons call it on the worker pool.
    Status commit(Envelope envelope);
    // Removes the tmp file now (e.g. message refused after DATA).
    void abort();

private:
    Writer() = default;
    Status flush_chunk();
    Spool spool_{std::string()};
    Folder destination_ = Folder::incoming;
    std::string queue_id_;
    std::string tmp_path_;
    UniqueFd fd_;
    std::string chunk_;
    uint64_t size_ = 0;
    bool committed_ = false;
};

// Reads a queue file: the envelope at open(), the message on demand.
class Reader {
public:
    // Validates the whole record structure (so a corrupt file is found before
    // delivery starts) and decodes the envelope.
    static Result<Reader> open(const std::string& path);
    const Envelope& envelope() const { return envelope_; }
    uint64_t message_size() const { return message_size_; }
    // Streams the message in order; `sink` returning false stops early.
    Status read_message(const std::function<bool(std::string_view chunk)>& sink) const;
    // The whole message in memory (bounded by `limit`; error past it).
    Result<std::string> message(uint64_t limit = UINT64_MAX) const;
    // The first `limit` bytes of the message (for headers).
    Result<std::string> message_prefix(size_t limit) const;
    // Up to `max` message bytes starting at message offset `offset` (empty at
    // or past the end): lets relayd pull the message in small pieces under
    // output back-pressure instead of holding it whole.
    Result<std::string> read_range(uint64_t offset, size_t max) const;

private:
    Reader() = default;
    UniqueFd fd_;
    Envelope envelope_;
    uint64_t message_size_ = 0;
    std::vector<std::pair<uint64_t, uint32_t>> chunks_;  // offset, length
};

// ---------------------------------------------------------------------------
// Status log: log/<id>, one text line per event, appended and fsync'd before
// each delivery attempt's outcome counts. Lines refer to recipients by index
// in the envelope (never by address, so no address can forge a line); reasons
// are made printable with CR/LF removed. A torn last line (crash during
// append) is ignored.
//   "r <index> <state> <unix time> <dsn> <reason>"
//   "x <index> <state> <unix time> <dsn> <relay> <remote dsn> <reason>"
//                        the same for an outcome relayd reported: <relay> is
//                        the server that answered ("mx.example[192.0.2.1]:25",
//                        "-" for none), <remote dsn> "y" when that server took
//                        over the DSN duties (RFC 3461 §6.2.3), else "n"
//   "n <unix time>"      next attempt no earlier than this
//   "b"                  the bounce/DSN for this message has been queued
//   "w"                  the delay warning (RFC 3464 action delayed) has been
//                        queued: it is sent once per message
// Logs written before "x" and "w" existed parse unchanged.
enum class RecipientState { pending, sent, deferred, bounced, expanded };
std::string_view recipient_state_name(RecipientState state);

struct RecipientStatus {
    RecipientState state = RecipientState::pending;
    int64_t time = 0;
    std::string dsn;     // "2.0.0", "4.2.2", "5.1.1"
    std::string reason;  // diagnostic text
    int attempts = 0;    // outcomes logged so far for this recipient
    // Outcomes from relayd: the remote server ("host[address]:port"), empty
    // for local outcomes and when no server was reached; and whether it
    // accepted the DSN request, so that success reports are its job.
    std::string relay;
    bool remote_dsn = false;
};

struct StatusLog {
    std::vector<RecipientStatus> recipients;  // sized to the envelope
    int64_t next_attempt = 0;
    bool bounce_queued = false;
    bool delay_warned = false;
    // A recipient is done when sent, bounced or expanded.
    bool all_done() const;
};

// Pure: parses the text of a log for an envelope with `recipient_count`.
StatusLog parse_status_log(std::string_view text, size_t recipient_count);
// An "r" line, or an "x" line when `status` has a relay or remote_dsn.
std::string format_recipient_line(size_t index, const RecipientStatus& status);

// Reads log/<id> (missing = nothing logged yet).
Result<StatusLog> read_status_log(const Spool& spool, std::string_view id, size_t recipient_count);
// Appends lines (each ending in "\n") and fsyncs.
Status append_status_log(const Spool& spool, std::string_view id, std::string_view lines);

}  // namespace facteur::queue
