// Wiping secrets (passwords, AUTH lines, relay host credentials) from
// memory before it is freed or reused.
#pragma once

#include <string>

namespace facteur::secret {

// Overwrites every byte with OPENSSL_cleanse (which the compiler may not
// drop as a dead store), then empties the string.
void wipe(std::string& text);

// The same over the whole capacity: a buffer reused for input lines may
// still hold an earlier, longer secret beyond its current size.
void wipe_capacity(std::string& buffer);

}  // namespace facteur::secret
