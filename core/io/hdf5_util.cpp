#include "core/io/hdf5_util.h"

#include <algorithm>
#include <string>

#include "core/util/error.h"

namespace mxlens::h5 {

static_assert(sizeof(hid_t) == 8, "hid_t is int64_t from HDF5 1.10 on");

QuietErrors::QuietErrors() {
  saved_ = H5Eget_auto2(H5E_DEFAULT, &func_, &data_) >= 0;
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

QuietErrors::~QuietErrors() {
  if (saved_) H5Eset_auto2(H5E_DEFAULT, func_, data_);
}

void Handle::reset() {
  if (id_ < 0) return;
  switch (H5Iget_type(id_)) {
    case H5I_FILE:
      H5Fclose(id_);
      break;
    case H5I_GROUP:
      H5Gclose(id_);
      break;
    case H5I_DATASET:
      H5Dclose(id_);
      break;
    case H5I_ATTR:
      H5Aclose(id_);
      break;
    case H5I_DATASPACE:
      H5Sclose(id_);
      break;
    case H5I_DATATYPE:
      H5Tclose(id_);
      break;
    case H5I_GENPROP_LST:
      H5Pclose(id_);
      break;
    default:
      break;
  }
  id_ = H5I_INVALID_HID;
}

void Handle::close(std::string_view what) {
  if (id_ < 0) return;
  herr_t rc = 0;
  const hid_t id = id_;
  id_ = H5I_INVALID_HID;
  switch (H5Iget_type(id)) {
    case H5I_FILE:
      rc = H5Fclose(id);
      break;
    case H5I_GROUP:
      rc = H5Gclose(id);
      break;
    case H5I_DATASET:
      rc = H5Dclose(id);
      break;
    case H5I_ATTR:
      rc = H5Aclose(id);
      break;
    default:
      Handle(id).reset();
      return;
  }
  if (rc < 0) fail(std::string(what), "closing failed");
}

namespace {

herr_t walk_first(unsigned n, const H5E_error2_t* err, void* data) {
  auto* out = static_cast<std::string*>(data);
  // Frame 0 is the innermost (where it went wrong); its description is the most specific.
  if (n == 0 && err && err->desc) *out = err->desc;
  return 0;
}

std::string name_str(std::string_view name) {
  return std::string(name);
}

Handle checked(hid_t id, const std::string& where, const std::string& what) {
  if (id < 0) fail(where, what);
  return Handle(id);
}

void check(herr_t rc, const std::string& where, const std::string& what) {
  if (rc < 0) fail(where, what);
}

Handle vlen_utf8_type() {
  Handle t(H5Tcopy(H5T_C_S1));
  if (!t.valid() || H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0)
    fail("HDF5", "cannot make a variable-length string type");
  return t;
}

void check_no_nul(std::string_view value, const std::string& where) {
  if (value.find('\0') != std::string_view::npos)
    throw Error(where, "string contains a NUL byte, which an HDF5 string cannot hold");
}

// Same kind of number: class, size and (for integers) signedness.
void check_type(hid_t stored, hid_t expected, const std::string& where) {
  const H5T_class_t cs = H5Tget_class(stored), ce = H5Tget_class(expected);
  const size_t ss = H5Tget_size(stored), se = H5Tget_size(expected);
  bool ok = cs == ce && ss == se;
  if (ok && ce == H5T_INTEGER) ok = H5Tget_sign(stored) == H5Tget_sign(expected);
  if (!ok) {
    auto describe = [](H5T_class_t c, size_t size, hid_t t) {
      std::string s = c == H5T_INTEGER
                          ? (H5Tget_sign(t) == H5T_SGN_NONE ? "unsigned integer" : "signed integer")
                      : c == H5T_FLOAT  ? "float"
                      : c == H5T_STRING ? "string"
                                        : "other type";
      return s + " of " + std::to_string(size) + " bytes";
    };
    throw Error(where, "stored as " + describe(cs, ss, stored) + ", expected " +
                           describe(ce, se, expected));
  }
}

std::string read_vlen_string(hid_t obj, hid_t type_on_file, bool is_attr,
                             const std::string& where) {
  if (H5Tget_class(type_on_file) != H5T_STRING || H5Tis_variable_str(type_on_file) <= 0)
    throw Error(where, "expected a variable-length string");
  const Handle mem = vlen_utf8_type();
  char* ptr = nullptr;
  const herr_t rc =
      is_attr ? H5Aread(obj, mem, &ptr) : H5Dread(obj, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, &ptr);
  if (rc < 0) fail(where, "cannot read string");
  std::string s = ptr ? std::string(ptr) : std::string();
  if (ptr) H5free_memory(ptr);
  return s;
}

}  // namespace

std::string last_error() {
  std::string msg;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_first, &msg);
  return msg;
}

void fail(const std::string& where, const std::string& what) {
  const std::string detail = last_error();
  throw Error(where, detail.empty() ? what : what + " (HDF5: " + detail + ")");
}

std::string path_of(hid_t obj) {
  const ssize_t n = H5Iget_name(obj, nullptr, 0);
  if (n <= 0) return "?";
  std::string s(size_t(n) + 1, '\0');
  H5Iget_name(obj, s.data(), s.size());
  s.resize(size_t(n));
  return s;
}

std::string child_path(hid_t parent, std::string_view name) {
  std::string p = path_of(parent);
  if (p.empty() || p.back() != '/') p += '/';
  return p + std::string(name);
}

Handle create_group(hid_t parent, std::string_view name) {
  return checked(H5Gcreate2(parent, name_str(name).c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                 child_path(parent, name), "cannot create group");
}

Handle open_group(hid_t parent, std::string_view name) {
  if (!has_child(parent, name)) throw Error(child_path(parent, name), "group is missing");
  return checked(H5Gopen2(parent, name_str(name).c_str(), H5P_DEFAULT), child_path(parent, name),
                 "cannot open group");
}

bool has_child(hid_t parent, std::string_view name) {
  const htri_t r = H5Lexists(parent, name_str(name).c_str(), H5P_DEFAULT);
  if (r < 0) fail(child_path(parent, name), "cannot look up");
  return r > 0;
}

bool has_attr(hid_t obj, std::string_view name) {
  const htri_t r = H5Aexists(obj, name_str(name).c_str());
  if (r < 0) fail(path_of(obj) + " attribute " + name_str(name), "cannot look up");
  return r > 0;
}

void write_attr_raw(hid_t obj, std::string_view name, hid_t file_type, hid_t mem_type,
                    const void* value) {
  const std::string where = path_of(obj) + " attribute " + name_str(name);
  const Handle space = checked(H5Screate(H5S_SCALAR), where, "cannot create dataspace");
  const Handle attr =
      checked(H5Acreate2(obj, name_str(name).c_str(), file_type, space, H5P_DEFAULT, H5P_DEFAULT),
              where, "cannot create attribute");
  check(H5Awrite(attr, mem_type, value), where, "cannot write attribute");
}

void read_attr_raw(hid_t obj, std::string_view name, hid_t expected_file_type, hid_t mem_type,
                   void* value) {
  const std::string where = path_of(obj) + " attribute " + name_str(name);
  if (!has_attr(obj, name)) throw Error(where, "attribute is missing");
  const Handle attr =
      checked(H5Aopen(obj, name_str(name).c_str(), H5P_DEFAULT), where, "cannot open attribute");
  const Handle space = checked(H5Aget_space(attr), where, "cannot read dataspace");
  if (H5Sget_simple_extent_npoints(space) != 1) throw Error(where, "expected a single value");
  const Handle type = checked(H5Aget_type(attr), where, "cannot read type");
  check_type(type, expected_file_type, where);
  check(H5Aread(attr, mem_type, value), where, "cannot read attribute");
}

void write_attr_string(hid_t obj, std::string_view name, std::string_view value) {
  const std::string where = path_of(obj) + " attribute " + name_str(name);
  check_no_nul(value, where);
  const Handle type = vlen_utf8_type();
  const Handle space = checked(H5Screate(H5S_SCALAR), where, "cannot create dataspace");
  const Handle attr =
      checked(H5Acreate2(obj, name_str(name).c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), where,
              "cannot create attribute");
  const std::string copy(value);
  const char* ptr = copy.c_str();
  check(H5Awrite(attr, type, &ptr), where, "cannot write attribute");
}

std::string read_attr_string(hid_t obj, std::string_view name) {
  const std::string where = path_of(obj) + " attribute " + name_str(name);
  if (!has_attr(obj, name)) throw Error(where, "attribute is missing");
  const Handle attr =
      checked(H5Aopen(obj, name_str(name).c_str(), H5P_DEFAULT), where, "cannot open attribute");
  const Handle space = checked(H5Aget_space(attr), where, "cannot read dataspace");
  if (H5Sget_simple_extent_npoints(space) != 1) throw Error(where, "expected a single string");
  const Handle type = checked(H5Aget_type(attr), where, "cannot read type");
  return read_vlen_string(attr, type, true, where);
}

void write_string_dataset(hid_t parent, std::string_view name, std::string_view value) {
  const std::string where = child_path(parent, name);
  check_no_nul(value, where);
  const Handle type = vlen_utf8_type();
  const Handle space = checked(H5Screate(H5S_SCALAR), where, "cannot create dataspace");
  const Handle d = checked(H5Dcreate2(parent, name_str(name).c_str(), type, space, H5P_DEFAULT,
                                      H5P_DEFAULT, H5P_DEFAULT),
                           where, "cannot create dataset");
  const std::string copy(value);
  const char* ptr = copy.c_str();
  check(H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, &ptr), where, "cannot write dataset");
}

std::string read_string_dataset(hid_t parent, std::string_view name) {
  const std::string where = child_path(parent, name);
  if (!has_child(parent, name)) throw Error(where, "dataset is missing");
  const Handle d =
      checked(H5Dopen2(parent, name_str(name).c_str(), H5P_DEFAULT), where, "cannot open dataset");
  const Handle space = checked(H5Dget_space(d), where, "cannot read dataspace");
  if (H5Sget_simple_extent_npoints(space) != 1) throw Error(where, "expected a single string");
  const Handle type = checked(H5Dget_type(d), where, "cannot read type");
  return read_vlen_string(d, type, false, where);
}

void write_dataset_raw(hid_t parent, std::string_view name, hid_t file_type, hid_t mem_type,
                       size_t elem_size, const void* data, const std::vector<uint64_t>& dims,
                       Storage storage) {
  const std::string where = child_path(parent, name);
  std::vector<hsize_t> hd(dims.begin(), dims.end());
  uint64_t n = 1;
  for (uint64_t x : dims) n *= x;
  const Handle space = checked(H5Screate_simple(int(hd.size()), hd.data(), nullptr), where,
                               "cannot create dataspace");
  const Handle dcpl = checked(H5Pcreate(H5P_DATASET_CREATE), where, "cannot create property list");
  const uint64_t bytes = n * elem_size;
  const bool compress = n > 0 && !dims.empty() &&
                        (storage == Storage::compressed ||
                         (storage == Storage::auto_size && bytes >= (uint64_t(64) << 10)));
  if (compress) {
    // Chunks of whole trailing dimensions, about 1 MiB (at least one row of the first).
    std::vector<hsize_t> chunk = hd;
    uint64_t row_bytes = elem_size;
    for (size_t i = 1; i < hd.size(); ++i) row_bytes *= hd[i];
    chunk[0] = hsize_t(std::clamp<uint64_t>((uint64_t(1) << 20) / row_bytes, 1, hd[0]));
    check(H5Pset_chunk(dcpl, int(chunk.size()), chunk.data()), where, "cannot set chunking");
    if (H5Zfilter_avail(H5Z_FILTER_SHUFFLE) > 0)
      check(H5Pset_shuffle(dcpl), where, "cannot set the shuffle filter");
    if (H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0)
      check(H5Pset_deflate(dcpl, 4), where, "cannot set the deflate filter");
  }
  const Handle d = checked(
      H5Dcreate2(parent, name_str(name).c_str(), file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT),
      where, "cannot create dataset");
  if (n > 0)
    check(H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), where,
          "cannot write dataset");
}

Handle open_dataset(hid_t parent, std::string_view name, hid_t expected_file_type,
                    std::vector<uint64_t>& dims) {
  const std::string where = child_path(parent, name);
  if (!has_child(parent, name)) throw Error(where, "dataset is missing");
  Handle d =
      checked(H5Dopen2(parent, name_str(name).c_str(), H5P_DEFAULT), where, "cannot open dataset");
  const Handle type = checked(H5Dget_type(d), where, "cannot read type");
  check_type(type, expected_file_type, where);
  const Handle space = checked(H5Dget_space(d), where, "cannot read dataspace");
  const int rank = H5Sget_simple_extent_ndims(space);
  if (rank < 0) fail(where, "cannot read the shape");
  std::vector<hsize_t> hd(static_cast<size_t>(rank));
  if (rank > 0 && H5Sget_simple_extent_dims(space, hd.data(), nullptr) < 0)
    fail(where, "cannot read the shape");
  dims.assign(hd.begin(), hd.end());
  return d;
}

void read_all(hid_t dataset, hid_t mem_type, void* dst) {
  check(H5Dread(dataset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst), path_of(dataset),
        "cannot read dataset");
}

}  // namespace mxlens::h5
