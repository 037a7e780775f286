from glob import glob

from setuptools import find_packages, setup

package_name = "nut_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(include=["nut_ros", "nut_ros.*", "engine", "engine.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml") + glob("config/*.xml") + glob("config/*.rviz")),
    ],
    package_data={
        "nut_ros": ["weights/*.safetensors", "data/README.md", "data/LICENSE.sam2", "data/cups/*.jpg",
                    "data/desk/rgb/*.jpg", "data/desk/kinect/*.png", "data/desk/poses.txt",
                    "train/textures/*.jpg", "train/textures/*.md", "render/csrc/*"],
    },
    install_requires=["setuptools", "numpy", "torch", "safetensors"],
    zip_safe=True,
    maintainer="nut_ros developers",
    maintainer_email="nut-ros@example.com",
    description="Online feed-forward dynamic Gaussian splatting from a monocular camera, as a ROS 2 node.",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "nut_ros_node = nut_ros.ros.node:main",
            "nut_ros_make_bag = nut_ros.tools.make_bag:main",
            "nut_ros_replay = nut_ros.tools.replay_eval:main",
            "nut_ros_demo = nut_ros.tools.demo:main",
            "nut_ros_train = nut_ros.train.cli:main",
        ],
    },
)
