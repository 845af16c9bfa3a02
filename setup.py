"""Build script for dnerv_fast.

The C++/CUDA kernels are compiled on first use with ninja (torch.utils.cpp_extension.load),
so installing never imports torch and never pulls a CUDA build of it; their sources ship as
package data of ``dnerv_fast.csrc``.
"""
from setuptools import find_packages, setup

setup(
    name="dnerv_fast",
    version="0.1.0",
    description="D-NeRV neural video representation: faithful model, fused kernels, real codec",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["dnerv_fast", "dnerv_fast.*"]),
    package_data={"dnerv_fast.csrc": ["*.h", "*.cpp", "*.cu", "*.cuh"]},
    install_requires=[
        "torch>=2.4",  # autocast queries by device type; install the CPU or CUDA build first (README)
        "numpy>=1.24",
        "ninja>=1.11",
        "av>=12",
        "pillow>=10",
        "constriction>=0.4",
        "tqdm>=4.60",
        "matplotlib>=3.7",
    ],
    extras_require={
        "triton": ["triton>=3.0"],
        "test": ["pytest>=9", "pytest-benchmark>=4", "triton>=3.0", "scikit-video>=1.1",
                 "pytorch-msssim>=1.0"],  # MS-SSIM parity (tests/test_metrics.py)
    },
    entry_points={"console_scripts": ["dnerv-fast=dnerv_fast.cli:main"]},
)
