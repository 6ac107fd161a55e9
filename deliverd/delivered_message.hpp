// The message as a mailbox or command receives it: Return-Path and
// Delivered-To prepended, server-only header fields removed (DESIGN §5),
// CRLF line endings turned into LF, streamed from the queue file.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "libmail/queue.hpp"
#include "libmail/result.hpp"
#include "libmail/store.hpp"

namespace facteur::deliverd {

// Where the message goes decides which fields only the server may write.
enum class Destination { maildir, mbox, pipe };

// A header section longer than this is refused (smtpd's own limits make it
// impossible for mail it accepted; this bounds what deliverd holds).
inline constexpr size_t kMaxHeaderBytes = 1 << 20;

// CRLF -> LF, streamed: a CR at the end of one chunk is held back until the
// next chunk shows whether an LF follows. A CR not followed by LF is kept.
class CrlfToLf {
public:
    std::string convert(std::string_view chunk);
    std::string finish();

private:
    bool pending_cr_ = false;
};

// "Return-Path: <sender>\n" (RFC 5322 §3.6.7; "<>" for the null sender)
// then "Delivered-To: recipient\n" (the Postfix/Dovecot trace field used
// for loop detection).
std::string trace_fields(std::string_view sender, std::string_view recipient);

// True when `header` already has a Delivered-To field naming `recipient`
// (ASCII case-insensitive, optional angle brackets): the message has been
// here for this recipient before, so delivering again would loop.
bool already_delivered_to(std::string_view header, std::string_view recipient);

// `header` (a header section) without the fields only the server may write:
// Return-Path always; for mbox also Status, X-Status, X-UID, X-Keywords,
// X-IMAP, X-IMAPbase and Content-Length, which mbox readers trust.
std::string strip_server_fields(std::string_view header, Destination destination);

struct PreparedMessage {
    enum class Problem { none, mail_loop, header_too_large };
    Problem problem = Problem::none;
    std::string head;          // trace fields + cleaned header section, LF endings
    uint64_t body_offset = 0;  // where the rest of the queued message starts
};

// Reads the header section of the queued message and prepares the head of
// the delivered one. An error means the queue file could not be read.
Result<PreparedMessage> prepare_message(const queue::Reader& reader, std::string_view sender,
                                        std::string_view recipient, Destination destination);

// The delivered message as a store::MessageSource: `prepared.head`, then
// the queued message from body_offset on, CRLF -> LF. `reader` must outlive
// the source. Safe to use from several threads at once (the Reader reads
// with pread).
store::MessageSource message_source(const queue::Reader& reader, PreparedMessage prepared);

}  // namespace facteur::deliverd
