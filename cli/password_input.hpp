// Reading a new password for `facteur user add|passwd`: never from the
// command line, only from the terminal (echo off, asked twice) or one line
// of stdin; the plaintext is wiped as soon as it is hashed.
#pragma once

#include <string>
#include <string_view>

#include "libmail/result.hpp"

namespace facteur::cli {

// Longest password accepted, the same bound auth::hash_password enforces.
inline constexpr size_t kMaxPasswordLength = 1024;

// A plaintext password. Its buffer is reserved once and never reallocated,
// so no stray copy is left in freed memory; wiped with OPENSSL_cleanse.
class Secret {
public:
    Secret();
    ~Secret();
    Secret(const Secret&) = delete;
    Secret& operator=(const Secret&) = delete;

    std::string_view view() const { return value_; }
    bool empty() const { return value_.empty(); }
    // False (and nothing appended) once kMaxPasswordLength would be passed.
    bool append(char c);
    void remove_last();
    void clear();

private:
    std::string value_;
};

// Reads one line from `fd` (stdin): the trailing "\n" (and a "\r" before it)
// is stripped; empty, over-long or NUL-containing passwords are refused.
Status read_password_line(int fd, Secret& out);

// Asks on /dev/tty with echo off, twice, and compares.
Status prompt_new_password(std::string_view prompt, Secret& out);

// The whole step: read (stdin or terminal), hash with yescrypt, wipe.
Result<std::string> read_new_password_hash(bool from_stdin, std::string_view address);

}  // namespace facteur::cli
