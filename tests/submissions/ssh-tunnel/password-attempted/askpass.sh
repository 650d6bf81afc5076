#!/bin/sh
echo hunter2
