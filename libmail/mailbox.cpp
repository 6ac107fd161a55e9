// The read side of the mail store, front part: formats, served sizes, the
// POP3 session lock and open_inbox choosing the Maildir or mbox backend.
#include "libmail/mailbox.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>

#include <fmt/format.h>
#include <openssl/evp.h>

#include "libmail/log.hpp"
#include "libmail/maildir.hpp"
#include "libmail/mailbox_internal.hpp"
#include "libmail/panic.hpp"
#include "libmail/store.hpp"
#include "libmail/system.hpp"

namespace facteur::store {

Result<Format> parse_format(std::string_view name) {
    if (name == "maildir") return Format::maildir;
    if (name == "mbox") return Format::mbox;
    return make_error(fmt::format("unknown mailbox format \"{}\" (expected maildir or mbox)", log::printable(name)));
}

std::string_view format_name(Format format) {
    switch (format) {
        case Format::maildir: return "maildir";
        case Format::mbox: return "mbox";
    }
    panic("format_name: unknown format");
}

uint64_t served_size(std::string_view stored_bytes) {
    ServedSizeCounter counter;
    counter.feed(stored_bytes);
    return counter.size();
}

void ServedSizeCounter::feed(std::string_view chunk) {
    if (chunk.empty()) return;
    uint64_t bare_newlines = 0;
    // The byte before chunk[0] is remembered from the previous chunk, so a
    // CRLF split between two chunks still counts as one CRLF.
    bool previous_cr = last_was_cr_;
    for (char c : chunk) {
        if (c == '\n' && !previous_cr) ++bare_newlines;
        previous_cr = c == '\r';
    }
    size_ += chunk.size() + bare_newlines;
    last_was_cr_ = previous_cr;
}

MessageReader::~MessageReader() = default;
Mailbox::~Mailbox() = default;

Result<std::unique_ptr<Mailbox>> open_inbox(const std::string& mail_path, Format format, const OpenOptions& options) {
    switch (format) {
        case Format::maildir: return detail::open_maildir_inbox(maildir_path(mail_path));
        case Format::mbox: return detail::open_mbox_inbox(mbox_path(mail_path), options);
    }
    panic("open_inbox: unknown format");
}

Result<std::optional<SessionLock>> SessionLock::try_acquire(const std::string& mail_path) {
    if (Status made = make_directories(mail_path, 0700); !made) return make_error(made.error());
    std::string path = mail_path + "/pop3.lock";
    UniqueFd fd(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) return make_error(fmt::format("cannot open {}: {}", path, system::errno_text(errno)));
    // flock(2) locks belong to the open file description: a second open of
    // the file, in this process or another, conflicts with this one.
    for (;;) {
        if (flock(fd.get(), LOCK_EX | LOCK_NB) == 0) return std::optional<SessionLock>(SessionLock(std::move(fd)));
        if (errno == EINTR) continue;
        if (errno == EWOULDBLOCK) return std::optional<SessionLock>();
        return make_error(fmt::format("cannot lock {}: {}", path, system::errno_text(errno)));
    }
}

namespace detail {

struct Md5::Context {
    EVP_MD_CTX* context = nullptr;
};

Md5::Md5() : context_(std::make_unique<Context>()) {
    context_->context = EVP_MD_CTX_new();
    if (context_->context == nullptr || EVP_DigestInit_ex(context_->context, EVP_md5(), nullptr) != 1)
        panic("EVP MD5 unavailable");
}

Md5::~Md5() { EVP_MD_CTX_free(context_->context); }

void Md5::update(std::string_view bytes) {
    if (bytes.empty()) return;
    if (EVP_DigestUpdate(context_->context, bytes.data(), bytes.size()) != 1) panic("EVP_DigestUpdate failed");
}

std::string Md5::hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    if (EVP_DigestFinal_ex(context_->context, digest, &length) != 1) panic("EVP_DigestFinal_ex failed");
    if (EVP_DigestInit_ex(context_->context, EVP_md5(), nullptr) != 1) panic("EVP MD5 unavailable");
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    out.reserve(length * 2);
    for (unsigned int i = 0; i < length; ++i) {
        out += kHex[digest[i] >> 4];
        out += kHex[digest[i] & 0x0f];
    }
    return out;
}

std::string md5_hex(std::string_view bytes) {
    Md5 md5;
    md5.update(bytes);
    return md5.hex();
}

bool valid_uid(std::string_view uid) {
    if (uid.empty() || uid.size() > 70) return false;
    for (char c : uid) {
        unsigned char byte = static_cast<unsigned char>(c);
        if (byte < 0x21 || byte > 0x7e) return false;
    }
    return true;
}

}  // namespace detail
}  // namespace facteur::store
