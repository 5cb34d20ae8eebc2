# rtpsend exports only Python-level classes (see rtpsend.pyx); nothing to cimport.
