// Wiping secrets from memory (see secret.hpp).
#include "libmail/secret.hpp"

#include <openssl/crypto.h>

namespace facteur::secret {

void wipe(std::string& text) {
    if (!text.empty()) OPENSSL_cleanse(text.data(), text.size());
    text.clear();
}

void wipe_capacity(std::string& buffer) {
    buffer.resize(buffer.capacity());
    wipe(buffer);
}

}  // namespace facteur::secret
