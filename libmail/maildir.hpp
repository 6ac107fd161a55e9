// Maildir (with Maildir++ folders) as deliverd writes it and pop3d/imapd
// read it: path helpers, unique file names, delivery tmp -> new, and the
// quota usage of a Maildir. Layout: https://cr.yp.to/proto/maildir.html,
// Maildir++: https://www.courier-mta.org/imap/README.maildirquota.html
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "libmail/result.hpp"
#include "libmail/store.hpp"

namespace facteur::store {

// <mail_path>/Maildir: a user's INBOX.
std::string maildir_path(std::string_view mail_path);

// Maildir++ folder names ("Lists.facteur"): no '/', no control characters,
// no empty component (so no leading, trailing or doubled '.'), at most 255
// bytes. The empty name is INBOX and is valid.
bool valid_folder_name(std::string_view folder);

// The directory of a folder in a Maildir: the Maildir itself for INBOX
// (empty name), else "<maildir>/.<folder>". The name must be valid.
std::string folder_path(std::string_view maildir, std::string_view folder);

// True when `folder` (valid, non-empty) exists as a Maildir++ folder, i.e.
// "<maildir>/.<folder>/cur" is a directory; INBOX always "exists".
bool folder_exists(std::string_view maildir, std::string_view folder);

// Creates `directory` (and missing parents) plus tmp/, new/, cur/ inside it,
// each missing one with mode 0700. Existing directories are left as they are.
Status create_maildir(const std::string& directory);

// Dovecot's escaping of a host name in file names: '/' -> "\057",
// ':' -> "\072" (':' separates the info part, '/' a path).
std::string escape_hostname(std::string_view host);

// The parts of a unique name, so tests can build one deterministically.
struct UniqueNameParts {
    int64_t seconds = 0;
    long microseconds = 0;
    pid_t pid = 0;
    uint64_t counter = 0;  // per process, grows with every name made
    std::string host;      // unescaped
};
// "<seconds>.M<usec>P<pid>Q<counter>.<escaped host>" (Dovecot's style).
std::string format_unique_name(const UniqueNameParts& parts);
// A fresh name from the clock, the pid and a process-wide atomic counter:
// unique for this host even with several threads delivering at once.
std::string new_unique_name(std::string_view host);

// The name a delivered file gets in new/: "<base>,S=<size>,W=<virtual>"
// where size is the file's byte count and virtual its size with every LF
// counted as CRLF (what POP3 and IMAP report; Dovecot writes the same).
std::string delivered_name(std::string_view base, uint64_t size, uint64_t virtual_size);

// The S=<size> a file name carries (before any ":2," info part), if any.
std::optional<uint64_t> size_from_name(std::string_view name);
// Likewise W=<virtual size>.
std::optional<uint64_t> virtual_size_from_name(std::string_view name);

// Bytes used by a Maildir, counted like Maildir++ quotas: every file in
// new/ and cur/ of INBOX and of every ".folder", taking S=<size> from the
// name when present and stat(2) otherwise. A missing Maildir uses 0.
Result<uint64_t> maildir_usage(const std::string& maildir);

// Delivers one message into `directory` (a Maildir or a Maildir++ folder
// directory, created with create_maildir when missing): write to
// tmp/<unique>, fsync, link into new/<unique>,S=..,W=.. (never replacing an
// existing file: a clash picks a new name), remove the tmp name, fsync new/.
// On any failure nothing is left in tmp/ or new/. The bytes are stored as
// the source gives them (deliverd converts line endings before).
WriteOutcome deliver_to_maildir(const std::string& directory, std::string_view host, const MessageSource& source);

}  // namespace facteur::store
