/* half.c - public entry points of the half-precision conversions. */
#include "adamas.h"
#include "half.h"

uint16_t adamas_f32_to_f16(float x) { return adamas_float_to_half(x); }
float adamas_f16_to_f32(uint16_t h) { return adamas_half_to_float(h); }
uint16_t adamas_f32_to_bf16(float x) { return adamas_float_to_bfloat(x); }
float adamas_bf16_to_f32(uint16_t h) { return adamas_bfloat_to_float(h); }
