// Password hashing with libxcrypt: yescrypt for new hashes; verification of
// crypt(3) hashes and Dovecot-style {SCHEME} hashes imported from Dovecot.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "libmail/result.hpp"

namespace facteur::auth {

// Longest password hashed or verified; longer input is refused, never truncated.
inline constexpr size_t kMaxPasswordLength = 1024;

// A new yescrypt hash ("$y$...") with a random salt from libxcrypt.
// Thread-safe (it runs on worker threads). Refuses empty passwords, passwords
// containing NUL and passwords longer than kMaxPasswordLength.
Result<std::string> hash_password(std::string_view password);

// Constant-time verification against crypt(3) hashes ($y$, $gy$, $7$, $6$,
// $5$, $2b$/$2y$/$2a$, $1$) and Dovecot schemes {SHA512-CRYPT},
// {SHA256-CRYPT}, {BLF-CRYPT}, {MD5-CRYPT}, {CRYPT}, {PLAIN}, {CLEAR},
// {SSHA256}, {SSHA512}, {SHA256}, {SHA512} (scheme names case-insensitive).
// Unknown scheme or malformed hash: false. Thread-safe.
bool verify_password(std::string_view password, std::string_view stored);

// True for anything that is not yescrypt: re-hash it after a good login.
bool needs_rehash(std::string_view stored);

// The scheme of a stored hash, as a canonical upper-case name with static
// storage (safe to log): "{ssha512}..." -> "SSHA512", "$6$..." ->
// "SHA512-CRYPT", "$y$..." -> "YESCRYPT", "$2b$..." -> "BLF-CRYPT".
// "" when the scheme is not one verify_password knows.
std::string_view scheme_of(std::string_view stored);

// RFC 1939 §7 APOP: lowercase hex MD5 of timestamp followed by the secret.
std::string apop_digest(std::string_view timestamp, std::string_view secret);
// Constant time; the client's hex digest may be in either case.
bool verify_apop(std::string_view timestamp, std::string_view secret, std::string_view client_digest_hex);

}  // namespace facteur::auth
