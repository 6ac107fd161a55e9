// mbox parsing for the INBOX reader (mailbox_mbox.cpp), pure and without
// I/O so it can be tested and fuzzed: message boundaries (RFC 4155), the
// stored form of a message (mboxrd unquoting, mbox-internal headers left
// out) and the Status rewrite of a commit. Internal to libmail.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/mailbox.hpp"
#include "libmail/mailbox_internal.hpp"
#include "libmail/result.hpp"

namespace facteur::store::detail {

// Header fields only mbox programs write (DESIGN §5): Status, X-Status,
// X-Keywords, X-UID, X-IMAP, X-IMAPbase, Content-Length, any case.
bool mbox_internal_field(std::string_view name, bool& is_status);

// The raw bytes of one message (after its From_ line, up to the empty line
// separating it from the next) -> its stored form: mboxrd quoting undone
// (">From " -> "From ", ">>From " -> ">From "), the internal header fields
// left out with their folded continuation lines. The output does not
// depend on how the input is split into chunks, so the size a scan computes
// is exactly what a reader returns; only a few bytes of a line start are
// ever held back.
class MboxFilter {
public:
    void feed(std::string_view input, std::string& out);
    void finish(std::string& out);
    // A Status field contained 'R' (RFC 4155 readers' \Seen).
    bool seen() const { return seen_; }
    // Offset in the input of the empty line ending the header block, or
    // the input's length when there is none (after finish()).
    uint64_t header_end() const { return header_end_; }
    // How many output bytes belong to the header block (they come first).
    uint64_t header_output() const { return header_output_; }

private:
    enum class State { line_start, carriage, field_name, quote, from_prefix, pass, drop };
    void emit(std::string& out, std::string_view bytes) {
        out.append(bytes);
        if (in_header_) header_output_ += bytes.size();
    }
    void end_of_headers() {
        in_header_ = false;
        header_end_ = line_start_;
        header_end_known_ = true;
    }

    State state_ = State::line_start;
    bool in_header_ = true;
    bool dropping_field_ = false;  // the current field is internal (its continuations go too)
    bool status_field_ = false;    // ... and it is Status
    bool seen_ = false;
    bool header_end_known_ = false;
    uint64_t consumed_ = 0;    // input bytes before the current chunk
    uint64_t line_start_ = 0;  // input offset of the current line
    uint64_t header_end_ = 0;
    uint64_t header_output_ = 0;
    std::string pending_;  // the undecided start of a line: a field name's first bytes at most
};

// FNV-1a 64: a From_ line's fingerprint, to check at commit time that the
// file still holds the snapshot's messages where they were.
struct Fnv {
    uint64_t value = 0xcbf29ce484222325ULL;
    void update(std::string_view bytes) {
        for (char c : bytes) {
            value ^= static_cast<unsigned char>(c);
            value *= 0x100000001b3ULL;
        }
    }
};

// One message of an mbox snapshot: where its parts are in the file, and
// what the scan learnt; its unique id is in the snapshot's id arena.
struct MboxMessage {
    uint64_t from_offset;    // the From_ line
    uint64_t content_start;  // after the From_ line
    uint64_t content_end;    // before the separating empty line
    uint64_t header_end;     // the empty line after the header block (or content_end)
    uint64_t size;           // served size of the filtered content
    uint64_t from_hash;
    uint32_t uid_offset;
    uint8_t uid_length;
    bool seen;
};

// One pass over the file: finds the messages (a From_ line at the start of
// the file's first message or after an empty line, RFC 4155 §2), and feeds
// each message's content through an MboxFilter for its size, \Seen and
// unique id (MD5 of the From_ line and the kept header; the caller numbers
// exact duplicates). Lines may be split anywhere between chunks.
class MboxScanner {
public:
    MboxScanner(std::string& uids, std::vector<MboxMessage>& messages) : uids_(uids), messages_(messages) {}
    void feed(std::string_view chunk);
    Status finish();

private:
    // The first bytes of a line: 5, or the whole line when shorter.
    void line_start(std::string_view prefix, uint64_t offset);
    // The rest of the line, in pieces.
    void line_data(std::string_view bytes, uint64_t offset);
    void to_filter(std::string_view bytes);
    void take_output();
    Status end_message(uint64_t end);

    std::string& uids_;
    std::vector<MboxMessage>& messages_;
    uint64_t offset_ = 0;  // file offset of the next chunk
    bool collecting_ = true;
    std::string prefix_;
    uint64_t prefix_offset_ = 0;
    bool previous_empty_ = false;
    bool in_message_ = false;
    bool in_from_line_ = false;
    // An empty line inside a message: the separator if a From_ line or the
    // end of the file follows, else content.
    std::string held_;
    uint64_t held_offset_ = 0;
    MboxMessage current_{};
    MboxFilter filter_;
    ServedSizeCounter counter_;
    Md5 md5_;
    Fnv fnv_;
    std::string out_;
    uint64_t header_hashed_ = 0;
    Status error_;
};

// The header block with \Seen recorded the way mbox programs do: the first
// Status field's value gets 'R' and 'O' (RFC 4155 readers: R read, O old),
// or "Status: RO" is added as the last field.
std::string with_status_seen(std::string_view block);

}  // namespace facteur::store::detail
