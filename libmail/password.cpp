// Password hashing (libxcrypt yescrypt) and verification of crypt(3) and
// Dovecot {SCHEME} hashes; APOP digests (RFC 1939 §7).
#include "libmail/password.hpp"
#include "libmail/ascii.hpp"

#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <array>
#include <cerrno>
#include <memory>
#include <optional>

#include <fmt/format.h>

#include "libmail/base64.hpp"
#include "libmail/system.hpp"

namespace facteur::auth {
namespace {

// A stored hash longer than this is garbage (yescrypt is ~73 bytes, SSHA512
// with a long salt a few hundred); refusing it bounds all work below.
constexpr size_t kMaxStoredLength = 4096;

bool has_nul(std::string_view text) { return text.find('\0') != std::string_view::npos; }

bool acceptable_password(std::string_view password) {
    return password.size() <= kMaxPasswordLength && !has_nul(password);
}

// A std::string that OPENSSL_cleanse()s itself: copies of the password.
class SecretString {
public:
    explicit SecretString(std::string_view text) : value_(text) {}
    SecretString(const SecretString&) = delete;
    SecretString& operator=(const SecretString&) = delete;
    ~SecretString() { OPENSSL_cleanse(value_.data(), value_.size()); }
    std::string& get() { return value_; }

private:
    std::string value_;
};

// struct crypt_data is ~32 KiB: on the heap, so worker threads with small
// stacks are fine; crypt_rn is reentrant. Wiped because it held the key.
class CryptScratch {
public:
    CryptScratch() = default;
    CryptScratch(const CryptScratch&) = delete;
    CryptScratch& operator=(const CryptScratch&) = delete;
    ~CryptScratch() { OPENSSL_cleanse(data_.get(), sizeof(crypt_data)); }
    crypt_data* get() { return data_.get(); }

private:
    std::unique_ptr<crypt_data> data_ = std::make_unique<crypt_data>();
};

std::optional<std::string> run_crypt(std::string_view password, std::string_view setting) {
    if (!acceptable_password(password) || has_nul(setting) || setting.empty()) return std::nullopt;
    CryptScratch scratch;
    SecretString key(password);
    std::string salt(setting);
    const char* result = crypt_rn(key.get().c_str(), salt.c_str(), scratch.get(), sizeof(crypt_data));
    // libxcrypt returns NULL or a "*0"/"*1" failure token on a bad setting.
    if (result == nullptr || result[0] == '*') return std::nullopt;
    return std::string(result);
}

bool equal_constant_time(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::optional<std::string> digest(const EVP_MD* md, std::string_view data) {
    std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
    unsigned int length = 0;
    if (md == nullptr || EVP_Digest(data.data(), data.size(), out.data(), &length, md, nullptr) != 1)
        return std::nullopt;
    return std::string(reinterpret_cast<const char*>(out.data()), length);
}

bool verify_crypt(std::string_view password, std::string_view hash) {
    auto computed = run_crypt(password, hash);
    return computed && equal_constant_time(*computed, hash);
}

// {PLAIN}: compare digests so neither the length nor the content of the
// stored password leaks through timing.
bool verify_plain(std::string_view password, std::string_view stored) {
    SecretString a(password), b(stored);
    auto da = digest(EVP_sha256(), a.get()), db = digest(EVP_sha256(), b.get());
    return da && db && equal_constant_time(*da, *db);
}

// Dovecot {SHA512} / {SSHA512} style: base64(digest(password || salt) || salt),
// unsalted when the salt is empty.
bool verify_digest(std::string_view password, std::string_view encoded, const EVP_MD* md, bool salted) {
    auto decoded = base64::decode(encoded);
    if (!decoded) return false;
    const auto digest_length = static_cast<size_t>(EVP_MD_get_size(md));
    if (salted ? decoded->size() <= digest_length : decoded->size() != digest_length) return false;
    SecretString input(password);
    input.get() += std::string_view(*decoded).substr(digest_length);
    auto computed = digest(md, input.get());
    return computed && equal_constant_time(*computed, std::string_view(*decoded).substr(0, digest_length));
}


enum class Kind { crypt, plain, digest, salted_digest };

struct PrefixedScheme {
    std::string_view name;
    Kind kind;
    // For *-CRYPT: the crypt(3) prefixes the hash must start with, so a
    // "{SHA512-CRYPT}$1$..." import is refused rather than silently weaker.
    std::array<std::string_view, 3> crypt_prefixes;
    const EVP_MD* (*md)();
};

// Dovecot's password scheme names (doc: "Password Schemes").
constexpr PrefixedScheme kPrefixedSchemes[] = {
    {"SHA512-CRYPT", Kind::crypt, {"$6$"}, nullptr},
    {"SHA256-CRYPT", Kind::crypt, {"$5$"}, nullptr},
    {"BLF-CRYPT", Kind::crypt, {"$2b$", "$2y$", "$2a$"}, nullptr},
    {"MD5-CRYPT", Kind::crypt, {"$1$"}, nullptr},
    {"CRYPT", Kind::crypt, {}, nullptr},
    {"PLAIN", Kind::plain, {}, nullptr},
    {"CLEAR", Kind::plain, {}, nullptr},
    {"SSHA256", Kind::salted_digest, {}, EVP_sha256},
    {"SSHA512", Kind::salted_digest, {}, EVP_sha512},
    {"SHA256", Kind::digest, {}, EVP_sha256},
    {"SHA512", Kind::digest, {}, EVP_sha512},
};

struct CryptScheme {
    std::string_view prefix;
    std::string_view name;
};

// crypt(3) hash prefixes libxcrypt verifies (crypt(5)).
constexpr CryptScheme kCryptSchemes[] = {
    {"$y$", "YESCRYPT"},      {"$gy$", "GOST-YESCRYPT"}, {"$7$", "SCRYPT"},
    {"$6$", "SHA512-CRYPT"},  {"$5$", "SHA256-CRYPT"},   {"$2b$", "BLF-CRYPT"},
    {"$2y$", "BLF-CRYPT"},    {"$2a$", "BLF-CRYPT"},     {"$1$", "MD5-CRYPT"},
};

const CryptScheme* find_crypt_scheme(std::string_view hash) {
    for (const CryptScheme& scheme : kCryptSchemes)
        if (hash.starts_with(scheme.prefix)) return &scheme;
    return nullptr;
}

// "{NAME}rest" -> the scheme and rest; nullptr when not a known scheme.
const PrefixedScheme* find_prefixed_scheme(std::string_view stored, std::string_view* rest) {
    if (!stored.starts_with('{')) return nullptr;
    size_t close = stored.find('}');
    if (close == std::string_view::npos) return nullptr;
    std::string_view name = stored.substr(1, close - 1);
    for (const PrefixedScheme& scheme : kPrefixedSchemes) {
        if (ascii::iequals(name, scheme.name)) {
            if (rest != nullptr) *rest = stored.substr(close + 1);
            return &scheme;
        }
    }
    return nullptr;
}

}  // namespace

Result<std::string> hash_password(std::string_view password) {
    if (password.empty()) return make_error("empty password");
    if (has_nul(password)) return make_error("password contains a NUL byte");
    if (password.size() > kMaxPasswordLength)
        return make_error(fmt::format("password longer than {} bytes", kMaxPasswordLength));
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    // count 0 and no random bytes: libxcrypt's default cost and its own
    // getrandom()-based salt.
    errno = 0;
    if (crypt_gensalt_rn("$y$", 0, nullptr, 0, setting, sizeof setting) == nullptr)
        return make_error(fmt::format("crypt_gensalt: {}", system::errno_text(errno)));
    auto hash = run_crypt(password, setting);
    if (!hash) return make_error("yescrypt hashing failed");
    return *hash;
}

std::string_view scheme_of(std::string_view stored) {
    if (stored.starts_with('{')) {
        const PrefixedScheme* scheme = find_prefixed_scheme(stored, nullptr);
        return scheme == nullptr ? std::string_view{} : scheme->name;
    }
    const CryptScheme* scheme = find_crypt_scheme(stored);
    return scheme == nullptr ? std::string_view{} : scheme->name;
}

bool verify_password(std::string_view password, std::string_view stored) {
    if (!acceptable_password(password) || stored.empty() || stored.size() > kMaxStoredLength) return false;
    if (stored.front() == '$') return find_crypt_scheme(stored) != nullptr && verify_crypt(password, stored);
    std::string_view rest;
    const PrefixedScheme* scheme = find_prefixed_scheme(stored, &rest);
    if (scheme == nullptr) return false;
    switch (scheme->kind) {
        case Kind::crypt: {
            bool prefix_ok = scheme->crypt_prefixes[0].empty();
            for (std::string_view prefix : scheme->crypt_prefixes)
                if (!prefix.empty() && rest.starts_with(prefix)) prefix_ok = true;
            // "*" and "!" mark locked accounts in passwd-style files.
            if (!prefix_ok || rest.empty() || rest.front() == '*' || rest.front() == '!') return false;
            return verify_crypt(password, rest);
        }
        case Kind::plain:
            return verify_plain(password, rest);
        case Kind::digest:
            return verify_digest(password, rest, scheme->md(), false);
        case Kind::salted_digest:
            return verify_digest(password, rest, scheme->md(), true);
    }
    return false;
}

bool needs_rehash(std::string_view stored) { return !stored.starts_with("$y$"); }

std::string apop_digest(std::string_view timestamp, std::string_view secret) {
    SecretString input(timestamp);
    input.get() += secret;
    auto raw = digest(EVP_md5(), input.get());
    if (!raw) return {};  // MD5 unavailable (FIPS provider): verify_apop fails
    std::string hex;
    hex.reserve(raw->size() * 2);
    for (unsigned char c : *raw) hex += fmt::format("{:02x}", c);
    return hex;
}

bool verify_apop(std::string_view timestamp, std::string_view secret, std::string_view client_digest_hex) {
    constexpr size_t kMd5HexLength = 32;
    if (client_digest_hex.size() != kMd5HexLength) return false;
    std::string expected = apop_digest(timestamp, secret);
    if (expected.size() != kMd5HexLength) return false;
    std::string given(client_digest_hex);
    for (char& c : given)
        if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
    return equal_constant_time(expected, given);
}

}  // namespace facteur::auth
