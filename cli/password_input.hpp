// Reading a new password (or APOP secret) for `facteur user add|passwd|apop`:
// never from the command line, only from the terminal (echo off, asked twice)
// or one line of stdin; the plaintext is wiped as soon as it is used.
#pragma once

#include <string>
#include <string_view>

#include "libmail/directory.hpp"
#include "libmail/result.hpp"

namespace facteur::cli {

// Longest password accepted, the same bound auth::hash_password enforces.
inline constexpr size_t kMaxPasswordLength = 1024;

// What is being read: its name in prompts and errors, its length bound, and
// the option to point at when there is no terminal to ask on.
struct SecretKind {
    std::string_view name;
    size_t max_length;
    std::string_view stdin_option;
};
inline constexpr SecretKind kPassword{"password", kMaxPasswordLength, "--password-stdin"};
// Stored in clear text (RFC 1939 §7 digests the secret itself), hence apart
// from the password and optional.
inline constexpr SecretKind kApopSecret{"APOP secret", directory::max_apop_secret_length, "--secret-stdin"};
static_assert(directory::max_apop_secret_length <= kMaxPasswordLength, "a Secret holds at most kMaxPasswordLength");

// A plaintext password or APOP secret. Its buffer is reserved once and never reallocated,
// so no stray copy is left in freed memory; wiped with OPENSSL_cleanse.
class Secret {
public:
    Secret();
    ~Secret();
    Secret(const Secret&) = delete;
    Secret& operator=(const Secret&) = delete;

    std::string_view view() const { return value_; }
    bool empty() const { return value_.empty(); }
    // False (and nothing appended) once `max_length` (at most
    // kMaxPasswordLength) would be passed.
    bool append(char c, size_t max_length = kMaxPasswordLength);
    void remove_last();
    void clear();

private:
    std::string value_;
};

// Reads one line from `fd` (stdin): the trailing "\n" (and a "\r" before it)
// is stripped; empty, over-long or NUL-containing values are refused.
// Nothing past the line's "\n" is consumed, so a second call reads the next.
Status read_password_line(int fd, Secret& out, const SecretKind& kind = kPassword);

// Asks on /dev/tty with echo off, twice, and compares.
Status prompt_new_password(std::string_view prompt, Secret& out, const SecretKind& kind = kPassword);

// Reads a new password from stdin or the terminal ("Password for ADDRESS: ").
Status read_new_password(bool from_stdin, std::string_view address, Secret& out);

// Reads a new APOP secret from stdin (`stdin_option` names where it comes
// from in the no-terminal error) or the terminal, and checks it with
// directory::check_apop_secret, so a bad one is refused before any change.
Status read_new_apop_secret(bool from_stdin, std::string_view address, Secret& out,
                            const SecretKind& kind = kApopSecret);

// Hashes with yescrypt, then wipes `password`.
Result<std::string> hash_new_password(Secret& password);

// The whole step: read (stdin or terminal), hash with yescrypt, wipe.
Result<std::string> read_new_password_hash(bool from_stdin, std::string_view address);

}  // namespace facteur::cli
