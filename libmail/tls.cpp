// OpenSSL server and client contexts: protocol and cipher policy, loading and
// reloading the certificate/key pair, client name checks, peer description.
#include "libmail/tls.hpp"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <cerrno>

#include <fmt/format.h>

#include "libmail/system.hpp"

namespace facteur::tls {
namespace {

// TLS 1.2: forward secrecy and AEAD only (RFC 7525 §4.2). TLS 1.3 keeps
// OpenSSL's default suites, which are all AEAD.
constexpr const char* kCiphers =
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:"
    "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "DHE-RSA-AES256-GCM-SHA384:DHE-RSA-AES128-GCM-SHA256";

struct BioFree {
    void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Free {
    void operator()(X509* certificate) const { X509_free(certificate); }
};
struct KeyFree {
    void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct ChainFree {
    void operator()(STACK_OF(X509) * chain) const { sk_X509_pop_free(chain, X509_free); }
};

using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using KeyPtr = std::unique_ptr<EVP_PKEY, KeyFree>;
using ChainPtr = std::unique_ptr<STACK_OF(X509), ChainFree>;

// A daemon must never stop and prompt on a terminal for a key passphrase:
// an encrypted key is an error.
int refuse_passphrase(char*, int, int, void*) { return -1; }

Result<BioPtr> open_file(const std::string& path, std::string_view what) {
    errno = 0;
    BioPtr bio(BIO_new_file(path.c_str(), "r"));
    if (!bio) {
        int saved = errno;
        ERR_clear_error();
        return make_error(
            fmt::format("cannot open {} {}: {}", what, path, saved != 0 ? system::errno_text(saved) : "unknown error"));
    }
    return bio;
}

struct Pair {
    X509Ptr certificate;
    ChainPtr chain;
    KeyPtr key;
};

// Reads "leaf certificate, then intermediates" (the usual fullchain.pem) and
// the private key, and checks they belong together.
Result<Pair> read_pair(const std::string& cert_file, const std::string& key_file) {
    ERR_clear_error();
    Pair pair;
    {
        auto bio = open_file(cert_file, "certificate file");
        if (!bio) return make_error(bio.error());
        pair.certificate.reset(PEM_read_bio_X509_AUX(bio->get(), nullptr, refuse_passphrase, nullptr));
        if (!pair.certificate)
            return make_error(fmt::format("no PEM certificate in {}: {}", cert_file, last_error()));
        pair.chain.reset(sk_X509_new_null());
        if (!pair.chain) return make_error("out of memory: " + last_error());
        while (X509* next = PEM_read_bio_X509(bio->get(), nullptr, refuse_passphrase, nullptr)) {
            if (sk_X509_push(pair.chain.get(), next) == 0) {
                X509_free(next);
                return make_error("out of memory: " + last_error());
            }
        }
        // The loop ends at end of file ("no start line") or at a broken entry.
        unsigned long error = ERR_peek_last_error();
        if (ERR_GET_LIB(error) == ERR_LIB_PEM && ERR_GET_REASON(error) == PEM_R_NO_START_LINE) {
            ERR_clear_error();
        } else if (error != 0) {
            return make_error(fmt::format("bad certificate chain in {}: {}", cert_file, last_error()));
        }
    }
    {
        auto bio = open_file(key_file, "private key file");
        if (!bio) return make_error(bio.error());
        pair.key.reset(PEM_read_bio_PrivateKey(bio->get(), nullptr, refuse_passphrase, nullptr));
        if (!pair.key)
            return make_error(fmt::format("no usable PEM private key in {} (encrypted keys are not supported): {}",
                                          key_file, last_error()));
    }
    if (X509_check_private_key(pair.certificate.get(), pair.key.get()) != 1)
        return make_error(fmt::format("private key {} does not match certificate {}: {}", key_file, cert_file,
                                      last_error()));
    return pair;
}

// Installs certificate, chain and key in one call, so a failure never leaves
// a certificate paired with the wrong key.
Status install_pair(SSL_CTX* context, const std::string& cert_file, const std::string& key_file) {
    auto pair = read_pair(cert_file, key_file);
    if (!pair) return make_error(pair.error());
    if (SSL_CTX_use_cert_and_key(context, pair->certificate.get(), pair->key.get(), pair->chain.get(), 1) != 1)
        return make_error(
            fmt::format("cannot use certificate {} with key {}: {}", cert_file, key_file, last_error()));
    return {};
}

}  // namespace

void Context::Free::operator()(SSL_CTX* context) const { SSL_CTX_free(context); }

std::string last_error() {
    std::string out;
    while (unsigned long code = ERR_get_error()) {
        char buffer[256];
        ERR_error_string_n(code, buffer, sizeof buffer);
        if (!out.empty()) out += "; ";
        out += buffer;
    }
    return out.empty() ? "unknown TLS error" : out;
}

Result<Context> Context::server(const std::string& cert_file, const std::string& key_file) {
    ERR_clear_error();
    Context result;
    result.context_.reset(SSL_CTX_new(TLS_server_method()));
    if (!result.context_) return make_error("SSL_CTX_new: " + last_error());
    SSL_CTX* context = result.context_.get();
    if (SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION) != 1)
        return make_error("cannot set TLS 1.2 minimum: " + last_error());
    // No compression (CRIME), no renegotiation (CVE-2009-3555 family, and a
    // client-driven CPU cost), our cipher order, and a peer closing TCP without
    // close_notify is not an error: SMTP, POP3 and IMAP end their own sessions.
    SSL_CTX_set_options(context, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                     SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (SSL_CTX_set_cipher_list(context, kCiphers) != 1) return make_error("cipher list: " + last_error());
    SSL_CTX_set_dh_auto(context, 1);  // RFC 7919 groups for the DHE suites
    SSL_CTX_set_session_cache_mode(context, SSL_SESS_CACHE_SERVER);
    static constexpr unsigned char kSessionContext[] = "facteur";
    SSL_CTX_set_session_id_context(context, kSessionContext, sizeof kSessionContext - 1);
    if (Status loaded = install_pair(context, cert_file, key_file); !loaded) return make_error(loaded.error());
    result.cert_file_ = cert_file;
    result.key_file_ = key_file;
    return result;
}

Result<Context> Context::client(const ClientOptions& options) {
    ERR_clear_error();
    Context result;
    result.context_.reset(SSL_CTX_new(TLS_client_method()));
    if (!result.context_) return make_error("SSL_CTX_new: " + last_error());
    SSL_CTX* context = result.context_.get();
    if (SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION) != 1)
        return make_error("cannot set TLS 1.2 minimum: " + last_error());
    SSL_CTX_set_options(context, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (options.verify_peer) {
        int loaded = options.ca_file.empty() ? SSL_CTX_set_default_verify_paths(context)
                                             : SSL_CTX_load_verify_locations(context, options.ca_file.c_str(), nullptr);
        if (loaded != 1)
            return make_error(fmt::format("cannot load CA certificates from {}: {}",
                                          options.ca_file.empty() ? "the system store" : options.ca_file,
                                          last_error()));
        SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nullptr);
    } else {
        SSL_CTX_set_verify(context, SSL_VERIFY_NONE, nullptr);
    }
    return result;
}

Status Context::reload() {
    if (cert_file_.empty()) return make_error("reload: not a server context");
    ERR_clear_error();
    // install_pair reads and checks everything before touching the context.
    // A new key of another type (RSA -> ECDSA) is added beside the old one
    // rather than replacing it; OpenSSL then picks per client.
    return install_pair(context_.get(), cert_file_, key_file_);
}

Status prepare_client(SSL* ssl, const std::string& hostname) {
    if (ssl == nullptr) return make_error("prepare_client: no SSL object");
    std::string name = hostname;
    if (!name.empty() && name.back() == '.') name.pop_back();  // RFC 6066 §3: no trailing dot
    if (name.empty()) return make_error("prepare_client: empty host name");
    if (name.find('\0') != std::string::npos) return make_error("prepare_client: NUL in host name");
    ERR_clear_error();
    unsigned char address[sizeof(struct in6_addr)];
    bool literal = inet_pton(AF_INET, name.c_str(), address) == 1 || inet_pton(AF_INET6, name.c_str(), address) == 1;
    // RFC 6066 §3: "Literal IPv4 and IPv6 addresses are not permitted" in SNI.
    if (!literal && SSL_set_tlsext_host_name(ssl, name.c_str()) != 1)
        return make_error(fmt::format("cannot set SNI {}: {}", name, last_error()));
    if ((SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) != 0) {
        X509_VERIFY_PARAM* parameters = SSL_get0_param(ssl);
        X509_VERIFY_PARAM_set_hostflags(parameters, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        int set = literal ? X509_VERIFY_PARAM_set1_ip_asc(parameters, name.c_str())
                          : X509_VERIFY_PARAM_set1_host(parameters, name.c_str(), name.size());
        if (set != 1) return make_error(fmt::format("cannot check peer name {}: {}", name, last_error()));
    }
    return {};
}

PeerInfo describe(const SSL* ssl) {
    PeerInfo info;
    if (ssl == nullptr) return info;
    info.version = SSL_get_version(ssl);
    if (const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl); cipher != nullptr) {
        info.cipher = SSL_CIPHER_get_name(cipher);
        info.bits = SSL_CIPHER_get_bits(cipher, nullptr);
    }
    return info;
}

}  // namespace facteur::tls
