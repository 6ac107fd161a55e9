// What the two INBOX backends of libmail/mailbox.hpp (mailbox_maildir.cpp,
// mailbox_mbox.cpp) share with its front, open_inbox: their entry points and
// the MD5 their unique ids use. Not for use outside libmail's mailbox files.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "libmail/mailbox.hpp"
#include "libmail/result.hpp"

namespace facteur::store::detail {

// An incremental MD5 (RAII over OpenSSL's EVP_MD_CTX), lowercase hex out.
class Md5 {
public:
    Md5();
    ~Md5();
    Md5(const Md5&) = delete;
    Md5& operator=(const Md5&) = delete;
    void update(std::string_view bytes);
    // The digest of everything fed since construction or the last hex().
    std::string hex();

private:
    struct Context;
    std::unique_ptr<Context> context_;
};

std::string md5_hex(std::string_view bytes);

// A unique id is 1..70 bytes in 0x21..0x7E (RFC 1939 §7).
bool valid_uid(std::string_view uid);

// Snapshots of the INBOX at `maildir` (the Maildir folder) and at `path`
// (the mbox file); a missing one is empty.
Result<std::unique_ptr<Mailbox>> open_maildir_inbox(const std::string& maildir);
Result<std::unique_ptr<Mailbox>> open_mbox_inbox(const std::string& path, const OpenOptions& options);

}  // namespace facteur::store::detail
