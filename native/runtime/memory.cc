// memfd / file mappings for guest memory. See memory.h.
#include "runtime/memory.h"

#include <cerrno>
#include <map>
#include <mutex>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#endif

namespace runtime {

namespace {

// Live mappings by start address. Entries are weak: the registry never keeps pages mapped.
std::mutex g_registry_mu;
std::map<uintptr_t, std::weak_ptr<Mapping>>& registry() {
  static auto* r = new std::map<uintptr_t, std::weak_ptr<Mapping>>();  // never destroyed: used until exit
  return *r;
}

}  // namespace

void Mapping::enroll(const std::shared_ptr<Mapping>& m) {
  if (m->data_ == nullptr) return;
  std::lock_guard<std::mutex> lock(g_registry_mu);
  registry()[reinterpret_cast<uintptr_t>(m->data_)] = m;
}

std::shared_ptr<Mapping> Mapping::containing(const void* p, size_t len) {
  if (p == nullptr) return nullptr;
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  // Declared before the lock, so a reference dropped here (the last one, if its owner let go
  // meanwhile) runs ~Mapping, which takes the lock, only after it is released.
  std::shared_ptr<Mapping> m;
  {
    std::lock_guard<std::mutex> lock(g_registry_mu);
    auto& r = registry();
    auto it = r.upper_bound(a);
    if (it == r.begin()) return nullptr;
    --it;
    m = it->second.lock();
  }
  if (m == nullptr) return nullptr;
  const uintptr_t b = reinterpret_cast<uintptr_t>(m->data_);
  if (a - b > m->size_ || len > m->size_ - (a - b)) return nullptr;
  return m;
}

size_t Mapping::page_size() {
  static const size_t p = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return p;
}

std::shared_ptr<Mapping> Mapping::allocate(size_t bytes, SysError* error) {
  const size_t page = page_size();
  const size_t size = (bytes + page - 1) / page * page;
  std::shared_ptr<Mapping> m(new Mapping());
  m->fd_ = static_cast<int>(::syscall(SYS_memfd_create, "understudy-guest", MFD_CLOEXEC));
  if (m->fd_ < 0) {
    *error = {errno, "memfd_create"};
    return nullptr;
  }
  if (size == 0) return m;
  if (::ftruncate(m->fd_, static_cast<off_t>(size)) != 0) {
    *error = {errno, "ftruncate"};
    return nullptr;
  }
  // SAFETY: fresh shared mapping of exactly `size` bytes of our own memfd; unmapped in ~Mapping.
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd_, 0);
  if (p == MAP_FAILED) {
    *error = {errno, "mmap"};
    return nullptr;
  }
  m->data_ = static_cast<uint8_t*>(p);
  m->size_ = size;
  enroll(m);
  return m;
}

std::shared_ptr<Mapping> Mapping::map_file(const std::string& path, bool writable, size_t max_bytes,
                                           SysError* error) {
  std::shared_ptr<Mapping> m(new Mapping());
  m->file_backed_ = true;
  m->writable_ = writable;
  m->fd_ = ::open(path.c_str(), (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
  if (m->fd_ < 0) {
    *error = {errno, "open"};
    return nullptr;
  }
  struct stat st;
  if (::fstat(m->fd_, &st) != 0) {
    *error = {errno, "fstat"};
    return nullptr;
  }
  if (!S_ISREG(st.st_mode)) {
    *error = {S_ISDIR(st.st_mode) ? EISDIR : EINVAL, "fstat",
              S_ISDIR(st.st_mode) ? "is a directory, not a regular file" : "not a regular file"};
    return nullptr;
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size > max_bytes) {
    *error = {EFBIG, "fstat", "larger than the largest buffer this Node.js can make"};
    return nullptr;
  }
  if (size == 0) return m;
  // SAFETY: maps exactly the file's current size. A read-only request uses a private
  // copy-on-write mapping so a write through the view cannot fault or reach the file.
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, writable ? MAP_SHARED : MAP_PRIVATE,
                   m->fd_, 0);
  if (p == MAP_FAILED) {
    *error = {errno, "mmap"};
    return nullptr;
  }
  m->data_ = static_cast<uint8_t*>(p);
  m->size_ = size;
  enroll(m);
  return m;
}

Mapping::~Mapping() {
  // Out of the registry before munmap, so no later mapping at this address meets the old entry.
  if (data_ != nullptr) {
    std::lock_guard<std::mutex> lock(g_registry_mu);
    auto& r = registry();
    auto it = r.find(reinterpret_cast<uintptr_t>(data_));
    if (it != r.end() && it->second.expired()) r.erase(it);
  }
  // SAFETY: data_/size_ are exactly what mmap returned; no user remains (last shared_ptr).
  if (data_ != nullptr) ::munmap(data_, size_);
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace runtime
