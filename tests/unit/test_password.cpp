// Unit tests for libmail/password: yescrypt hashing, verification of crypt(3)
// and Dovecot {SCHEME} hashes from independent tools, APOP (RFC 1939 §7).
#include <catch2/catch.hpp>

#include <crypt.h>
#include <openssl/evp.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "libmail/base64.hpp"
#include "libmail/password.hpp"

using namespace facteur;

namespace {

// Made with OpenSSL, an implementation independent of libxcrypt:
//   openssl passwd -6 -salt saltsalt secret   (and -5, -1, rounds=10000)
const std::string kSha512 =
    "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";
const std::string kSha512Rounds =
    "$6$rounds=10000$saltsalt$WowrPBpEDVlCoruBosYlrZycTCx3//TyDHYqEhX9DUHHt0XTztUqzQDDUuvUGRA8aUe9p55hcAxeGcu58sm3u.";
const std::string kSha256 = "$5$saltsalt$0IyaXrmV7.sGNS6tirgqHLqX/G.FBvgkYA.lpPdS5sA";
const std::string kMd5 = "$1$saltsalt$9xy1btjgzLYfb7hivXtC//";
// OpenWall crypt_blowfish test vector: "U*U" at cost 5. $2b$/$2y$ are the
// same algorithm for such short passwords.
const std::string kBcrypt = "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";
// printf secretNaCl1234 | openssl dgst -sha512 -binary | cat - <(printf NaCl1234) | base64
const std::string kSsha512 =
    "+U79PiCUpDUSGIet8J/C+5LwCuyIMpq7mOqAaR/5mBRUR8Ws6o/EKpJOG7/dpxqv6UmItclx3HPr1gK4nM8YBk5hQ2wxMjM0";
// printf secret | openssl dgst -sha256 -binary | base64
const std::string kSha256Digest = "K7gNU3sdo+OL0wNhqoVWhr3g6s1xYv72ol/pe/Unols=";

// Dovecot's {SSHA*} layout computed here with OpenSSL EVP.
std::string salted_digest(const EVP_MD* md, std::string_view password, std::string_view salt) {
    std::string input = std::string(password) + std::string(salt);
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    REQUIRE(EVP_Digest(input.data(), input.size(), out, &length, md, nullptr) == 1);
    return base64::encode(std::string(reinterpret_cast<char*>(out), length) + std::string(salt));
}

// A hash of another libxcrypt method, to show verify_password accepts it.
std::string libxcrypt_hash(const char* prefix, std::string_view password) {
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    REQUIRE(crypt_gensalt_rn(prefix, 0, nullptr, 0, setting, sizeof setting) != nullptr);
    auto data = std::make_unique<crypt_data>();
    const char* hash = crypt_rn(std::string(password).c_str(), setting, data.get(), sizeof(crypt_data));
    REQUIRE(hash != nullptr);
    REQUIRE(hash[0] != '*');
    return hash;
}

}  // namespace

TEST_CASE("yescrypt: hash, verify, wrong password, fresh salts") {
    auto hash = auth::hash_password("correct horse");
    REQUIRE(hash.ok());
    CHECK(hash->starts_with("$y$"));
    CHECK(auth::scheme_of(*hash) == "YESCRYPT");
    CHECK(auth::verify_password("correct horse", *hash));
    CHECK_FALSE(auth::verify_password("correct horsE", *hash));
    CHECK_FALSE(auth::verify_password("correct horse ", *hash));
    CHECK_FALSE(auth::verify_password("", *hash));
    CHECK_FALSE(auth::needs_rehash(*hash));
    auto again = auth::hash_password("correct horse");
    REQUIRE(again.ok());
    CHECK(*again != *hash);
    CHECK(auth::verify_password("correct horse", *again));
}

TEST_CASE("hashing and verifying run concurrently on worker threads") {
    constexpr int kThreads = 4;
    std::vector<int> good(kThreads, 0), bad(kThreads, 0);
    std::vector<std::string> hashes(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            auto hash = auth::hash_password("pw" + std::to_string(t));
            if (hash.ok()) hashes[t] = *hash;
            for (int i = 0; i < 5; ++i) {
                good[t] += auth::verify_password("secret", kSha512) + auth::verify_password("U*U", kBcrypt);
                bad[t] += auth::verify_password("Secret", kSha512) + auth::verify_password("U*V", kBcrypt);
            }
        });
    }
    for (std::thread& thread : threads) thread.join();
    for (int t = 0; t < kThreads; ++t) {
        CHECK(good[t] == 10);
        CHECK(bad[t] == 0);
        CHECK(auth::verify_password("pw" + std::to_string(t), hashes[t]));
    }
}

TEST_CASE("hash_password refuses bad passwords with a reason") {
    auto bad = GENERATE(std::string(), std::string("a\0b", 3), std::string(auth::kMaxPasswordLength + 1, 'x'));
    auto hash = auth::hash_password(bad);
    REQUIRE_FALSE(hash.ok());
    CHECK_FALSE(hash.error().empty());
}

TEST_CASE("verify_password rejects over-long and NUL-containing passwords") {
    std::string longest(auth::kMaxPasswordLength, 'p');
    CHECK(auth::verify_password(longest, "{PLAIN}" + longest));
    CHECK_FALSE(auth::verify_password(longest + "p", "{PLAIN}" + longest + "p"));
    CHECK_FALSE(auth::verify_password(std::string("sec\0ret", 7), "{PLAIN}sec"));
    CHECK_FALSE(auth::verify_password(std::string("sec\0ret", 7), std::string("{PLAIN}sec\0ret", 14)));
}

TEST_CASE("crypt(3) hashes made by openssl passwd") {
    auto [hash, scheme] = GENERATE_REF(table<std::string, std::string>({
        {kSha512, "SHA512-CRYPT"},
        {kSha512Rounds, "SHA512-CRYPT"},
        {kSha256, "SHA256-CRYPT"},
        {kMd5, "MD5-CRYPT"},
    }));
    INFO(hash);
    CHECK(auth::verify_password("secret", hash));
    CHECK_FALSE(auth::verify_password("Secret", hash));
    CHECK_FALSE(auth::verify_password("", hash));
    CHECK(auth::needs_rehash(hash));
    CHECK(auth::scheme_of(hash) == scheme);
    // The same hash imported from a Dovecot passwd file, any case.
    CHECK(auth::verify_password("secret", "{" + scheme + "}" + hash));
    CHECK(auth::verify_password("secret", "{CRYPT}" + hash));
    CHECK(auth::verify_password("secret", "{crypt}" + hash));
    CHECK_FALSE(auth::verify_password("wrong", "{" + scheme + "}" + hash));
    CHECK(auth::scheme_of("{" + scheme + "}" + hash) == scheme);
    CHECK(auth::needs_rehash("{" + scheme + "}" + hash));
}

TEST_CASE("Dovecot scheme names are case-insensitive") {
    CHECK(auth::verify_password("secret", "{sha512-crypt}" + kSha512));
    CHECK(auth::verify_password("secret", "{Sha512-Crypt}" + kSha512));
    CHECK(auth::scheme_of("{ssha512}x") == "SSHA512");
    CHECK(auth::verify_password("secret", "{ssha512}" + kSsha512));
}

TEST_CASE("a {SCHEME}-CRYPT prefix must match the hash inside") {
    CHECK_FALSE(auth::verify_password("secret", "{SHA512-CRYPT}" + kMd5));
    CHECK_FALSE(auth::verify_password("secret", "{MD5-CRYPT}" + kSha512));
    CHECK_FALSE(auth::verify_password("secret", "{BLF-CRYPT}" + kSha256));
}

TEST_CASE("bcrypt in its three prefixes, bare and {BLF-CRYPT}") {
    auto prefix = GENERATE(as<std::string>{}, "$2a$", "$2b$", "$2y$");
    std::string hash = prefix + kBcrypt.substr(4);
    INFO(hash);
    CHECK(auth::verify_password("U*U", hash));
    CHECK(auth::verify_password("U*U", "{BLF-CRYPT}" + hash));
    CHECK_FALSE(auth::verify_password("U*V", hash));
    CHECK_FALSE(auth::verify_password("U*V", "{BLF-CRYPT}" + hash));
    CHECK(auth::scheme_of(hash) == "BLF-CRYPT");
    CHECK(auth::needs_rehash(hash));
}

TEST_CASE("other libxcrypt methods: gost-yescrypt and scrypt") {
    auto [prefix, scheme] = GENERATE(table<std::string, std::string>({{"$gy$", "GOST-YESCRYPT"}, {"$7$", "SCRYPT"}}));
    std::string hash = libxcrypt_hash(prefix.c_str(), "hunter2");
    INFO(hash);
    CHECK(auth::verify_password("hunter2", hash));
    CHECK_FALSE(auth::verify_password("hunter3", hash));
    CHECK(auth::scheme_of(hash) == scheme);
    CHECK(auth::needs_rehash(hash));
}

TEST_CASE("salted and unsalted SHA-2 digests") {
    CHECK(auth::verify_password("secret", "{SSHA512}" + kSsha512));
    CHECK_FALSE(auth::verify_password("secreT", "{SSHA512}" + kSsha512));
    CHECK(auth::verify_password("secret", "{SHA256}" + kSha256Digest));
    CHECK_FALSE(auth::verify_password("secreT", "{SHA256}" + kSha256Digest));
    CHECK(auth::verify_password("secret", "{SSHA512}" + salted_digest(EVP_sha512(), "secret", "\x01\xffpepper")));
    CHECK(auth::verify_password("secret", "{SSHA256}" + salted_digest(EVP_sha256(), "secret", "NaCl")));
    CHECK_FALSE(auth::verify_password("Secret", "{SSHA256}" + salted_digest(EVP_sha256(), "secret", "NaCl")));
    CHECK(auth::verify_password("secret", "{SHA512}" + salted_digest(EVP_sha512(), "secret", "")));
    // An unsalted digest is not a salted one with an empty salt, and back.
    CHECK_FALSE(auth::verify_password("secret", "{SSHA256}" + kSha256Digest));
    CHECK_FALSE(auth::verify_password("secret", "{SHA256}" + salted_digest(EVP_sha256(), "secret", "NaCl")));
    CHECK(auth::scheme_of("{SHA256}" + kSha256Digest) == "SHA256");
    CHECK(auth::needs_rehash("{SSHA512}" + kSsha512));
}

TEST_CASE("{PLAIN} and {CLEAR}") {
    CHECK(auth::verify_password("secret", "{PLAIN}secret"));
    CHECK(auth::verify_password("secret", "{CLEAR}secret"));
    CHECK(auth::verify_password("sec}ret", "{clear}sec}ret"));
    CHECK_FALSE(auth::verify_password("secret", "{PLAIN}secreT"));
    CHECK_FALSE(auth::verify_password("secret", "{PLAIN}secret2"));
    CHECK_FALSE(auth::verify_password("", "{PLAIN}x"));
    CHECK(auth::needs_rehash("{PLAIN}secret"));
}

TEST_CASE("unknown schemes and malformed hashes are false, never a crash") {
    auto garbage = GENERATE(as<std::string>{}, "", "{", "}", "{}", "{}secret", "{UNKNOWN}secret", "{PLAIN",
                            "{SSHA512}!!!", "{SSHA512}", "{SHA256}Zg==", "{SHA512}" + kSha256Digest,
                            "{SSHA256}Zm9v", "$6$", "$6$saltsalt$", "$6$saltsalt$short", "$y$broken", "$y$",
                            "$2b$99$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "$9$abc", "$", "*",
                            "!locked", "{CRYPT}*", "{CRYPT}!" + kSha512, "{CRYPT}", "secret", "plaintext",
                            kSha512 + "\n", std::string(5000, '$'), "{SSHA512}" + std::string(8000, 'A'));
    INFO(garbage);
    CHECK_FALSE(auth::verify_password("secret", garbage));
}

TEST_CASE("scheme_of names the scheme or returns empty") {
    auto [stored, scheme] = GENERATE(table<std::string, std::string>({
        {"$y$j9T$abc$def", "YESCRYPT"},
        {"$gy$j9T$abc$def", "GOST-YESCRYPT"},
        {"$7$CU..../....abc$def", "SCRYPT"},
        {"$2y$05$x", "BLF-CRYPT"},
        {"{SHA256-CRYPT}$5$x", "SHA256-CRYPT"},
        {"{blf-crypt}$2b$x", "BLF-CRYPT"},
        {"{clear}x", "CLEAR"},
        {"{SSHA256}x", "SSHA256"},
        {"{NOPE}x", ""},
        {"{SHA512", ""},
        {"secret", ""},
        {"", ""},
    }));
    CHECK(auth::scheme_of(stored) == scheme);
}

TEST_CASE("APOP digest: RFC 1939 §7 example") {
    const std::string timestamp = "<1896.697170952@dbc.mtview.ca.us>";
    CHECK(auth::apop_digest(timestamp, "tanstaaf") == "c4c9334bac560ecc979e58001b3e22fb");
    CHECK(auth::verify_apop(timestamp, "tanstaaf", "c4c9334bac560ecc979e58001b3e22fb"));
    CHECK(auth::verify_apop(timestamp, "tanstaaf", "C4C9334BAC560ECC979E58001B3E22FB"));
    CHECK_FALSE(auth::verify_apop(timestamp, "tanstaaf", "c4c9334bac560ecc979e58001b3e22fa"));
    CHECK_FALSE(auth::verify_apop(timestamp, "tanstaaF", "c4c9334bac560ecc979e58001b3e22fb"));
    CHECK_FALSE(auth::verify_apop("<other@host>", "tanstaaf", "c4c9334bac560ecc979e58001b3e22fb"));
    CHECK_FALSE(auth::verify_apop(timestamp, "tanstaaf", ""));
    CHECK_FALSE(auth::verify_apop(timestamp, "tanstaaf", "c4c9334bac560ecc979e58001b3e22fb0"));
    CHECK_FALSE(auth::verify_apop(timestamp, "tanstaaf", "c4c9334bac560ecc979e58001b3e22f"));
}
